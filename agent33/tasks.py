from celery import shared_task
from django.db import connection


@shared_task(name="agent33.ping")
def ping() -> dict:
    """Proves that tasks run, eagerly or on a worker, and that the worker reaches the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"pong": True, "database": connection.vendor}
