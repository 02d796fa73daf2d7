from celery import shared_task
from django.db import connection


@shared_task(name="agent33.ping")
def ping() -> dict:
    """Proves that tasks run, eagerly or on a worker, and that the worker reaches the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"pong": True, "database": connection.vendor}


@shared_task(name="agent33.purge_idempotency_records")
def purge_idempotency_records() -> int:
    """Idempotency records past their 24 h replay window (beat: hourly)."""
    from agent33.api.idempotency import purge_expired_records

    return purge_expired_records()


@shared_task(name="agent33.compact_row_counts")
def compact_row_counts() -> None:
    """Fold /metrics' delta rows between scrapes (a deployment nobody scrapes must not grow
    them without end)."""
    from agent33.observability.row_counts import compact_row_counts as compact

    compact()


@shared_task(name="agent33.purge_rate_counters")
def purge_rate_counters() -> int:
    """Database rate counters of callers idle for an hour (beat: hourly). Without Redis,
    every caller that was ever throttled has a row until then."""
    from agent33.auth.counters import purge_stale

    return purge_stale()
