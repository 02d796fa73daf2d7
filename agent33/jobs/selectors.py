"""Reads of the jobs table for /metrics, the hub's "Needs attention" and the admin."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q
from django.tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from .registry import registered_jobs

__all__ = ["TENANT_LOOKUP", "failed_jobs", "job_counts", "job_name_of", "jobs_in_scope"]

# The tenant a job works for, inside its JSON arguments (agent33.jobs.backends.META_KEY).
TENANT_LOOKUP = "args_kwargs__kwargs___job__tenant_id"


def job_name_of(task_path: str) -> str:
    for name, job in registered_jobs().items():
        if job.module_path == task_path:
            return name
    return task_path


def jobs_in_scope(tenants: Iterable[str] | None):
    """Every job for `tenants=None` (superusers), else the jobs of those tenants only:
    platform jobs (no tenant) are not shown to tenant-limited staff."""
    if tenants is None:
        return DBTaskResult.objects.all()
    return DBTaskResult.objects.filter(**{f"{TENANT_LOOKUP}__in": list(tenants)})


def failed_jobs(tenants: Iterable[str] | None = None):
    """Jobs that used their last try (kept until pruned by `agent33.prune_jobs`)."""
    return jobs_in_scope(tenants).filter(status=TaskResultStatus.FAILED)


def job_counts() -> list[tuple[str, str, int]]:
    """(job, state, count) for the jobs not done: queued, retrying (queued again after a
    failed try), running and failed. Successful rows are pruned, so this reads a small set."""
    rows = (DBTaskResult.objects
            .filter(status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING,
                                TaskResultStatus.FAILED])
            .values_list("task_path", "status")
            .annotate(total=Count("pk"), retrying=Count("pk", filter=~Q(traceback="")))
            .order_by("task_path", "status"))
    counts = []
    for task_path, status, total, retrying in rows:
        name = job_name_of(task_path)
        if status == TaskResultStatus.READY:
            if total - retrying:
                counts.append((name, "queued", total - retrying))
            if retrying:
                counts.append((name, "retrying", retrying))
        else:
            counts.append((name, status.lower(), total))
    return counts
