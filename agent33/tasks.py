from celery import shared_task


@shared_task(name="agent33.ping")
def ping() -> str:
    """Proves that tasks run, eagerly or on a worker."""
    return "pong"
