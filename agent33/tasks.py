"""The platform's own jobs (agent33/jobs): a health check, and the hourly purges."""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.tasks.base import TaskResultStatus
from django.utils import timezone

from agent33.jobs import job


@job("agent33.ping", max_attempts=1, time_limit=30)
def ping() -> dict:
    """Proves that jobs run, on a worker of either mode, and that it reaches the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"pong": True, "database": connection.vendor}


@job("agent33.purge_idempotency_records", max_attempts=3, time_limit=600)
def purge_idempotency_records() -> int:
    """Idempotency records past their 24 h replay window (hourly)."""
    from agent33.api.idempotency import purge_expired_records

    return purge_expired_records()


@job("agent33.compact_row_counts", max_attempts=3, time_limit=120)
def compact_row_counts() -> None:
    """Fold /metrics' delta rows between scrapes (every minute): a deployment nobody scrapes
    must not grow them without end."""
    from agent33.observability.row_counts import compact_row_counts as compact

    compact()


@job("agent33.purge_rate_counters", max_attempts=3, time_limit=600)
def purge_rate_counters() -> int:
    """Database rate counters of callers idle for an hour (hourly). Without Redis, every
    caller that was ever throttled has a row until then."""
    from agent33.auth.counters import purge_stale

    return purge_stale()


@job("agent33.prune_jobs", max_attempts=3, time_limit=600)
def prune_jobs() -> int:
    """Finished jobs past the time staff may want them (hourly): successful ones after
    AGENT33_JOBS_KEEP_SUCCEEDED_HOURS, failed ones after AGENT33_JOBS_KEEP_FAILED_DAYS."""
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    succeeded = DBTaskResult.objects.filter(
        status=TaskResultStatus.SUCCESSFUL,
        finished_at__lt=now - timedelta(hours=settings.AGENT33_JOBS_KEEP_SUCCEEDED_HOURS))
    failed = DBTaskResult.objects.filter(
        status=TaskResultStatus.FAILED,
        finished_at__lt=now - timedelta(days=settings.AGENT33_JOBS_KEEP_FAILED_DAYS))
    return succeeded.delete()[0] + failed.delete()[0]
