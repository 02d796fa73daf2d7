"""Background work: ONE call enqueues a job, whatever runs it.

    from agent33 import jobs

    @jobs.job("outcomes.evaluate_declines", max_attempts=5)
    def evaluate_declines(*, keys): ...

    jobs.enqueue("outcomes.evaluate_declines", tenant_id=tenant.pk, keys=[...])

Backends (Django's tasks framework, `TASKS` in settings): the database queue run by
`manage.py worker` (embedded default), Celery on Redis (`CELERY_BROKER_URL`), and an
in-process one for tests. See agent33/jobs/backends.py and worker.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from .registry import Job, Retry, get_job, job, registered_jobs

__all__ = ["Job", "Retry", "enqueue", "get_job", "job", "registered_jobs"]


def enqueue(name: str, *, tenant_id: str | None = None, delay: float | None = None,
            time_limit: float | None = None, **kwargs: Any) -> None:
    """Queue the job `name` with `kwargs` (plain JSON) for `tenant_id` (None: a platform
    job), to start no sooner than `delay` seconds from now and to be stopped after
    `time_limit` seconds (default: the job's). The current request id travels with it.

    Call it inside the transaction that makes the work necessary: the database queue writes
    the job in that transaction (both or neither commit), Celery publishes it once that
    transaction commits."""
    from agent33.observability import context

    from .backends import META_KEY

    registered = get_job(name)
    meta: dict[str, Any] = {"tenant_id": tenant_id,
                            "request_id": context.current().request_id}
    if time_limit is not None:
        meta["time_limit"] = float(time_limit)
    task = registered
    if delay:
        task = registered.using(run_after=timezone.now() + timedelta(seconds=delay))
    task.enqueue(**kwargs, **{META_KEY: meta})
