"""The three Django task backends a job can be sent to, and how one try of a job runs.

- `DatabaseBackend` (the embedded default): django-tasks-db's table. The row is written in
  the caller's transaction, so the job exists exactly when the work that asked for it
  committed: a web process killed right after its answer has nothing left to hand over.
  `manage.py worker` runs it (agent33/jobs/worker.py).
- `CeleryBackend` (scaled out, `CELERY_BROKER_URL`): published when the caller's
  transaction commits (a worker must not start before the rows it reads exist); Celery
  workers run it, beat runs the schedule. Retries use Celery's own `retry`; a job that
  failed its last try is written to the same table as FAILED, so staff see failed jobs in
  one place in both modes.
- `ImmediateBackend` (tests only): runs the job in-process when the caller commits, once,
  and lets its exception propagate. Nothing in the service selects it.

Every job carries `_job` in its keyword arguments: the tenant it works for and the request
id of the request that queued it, bound around the job as they are around a request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from traceback import format_exception
from typing import Any

from django.db import transaction
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskResult, TaskResultStatus
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.backend import DatabaseBackend as _DatabaseBackend

from .registry import Job, Retry

__all__ = ["META_KEY", "CeleryBackend", "DatabaseBackend", "ImmediateBackend", "run_job"]

logger = logging.getLogger("agent33.jobs")

META_KEY = "_job"


def split_meta(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs = dict(kwargs)
    return kwargs, kwargs.pop(META_KEY, None) or {}


@contextmanager
def job_context(meta: dict[str, Any]) -> Iterator[None]:
    """The tenant scope and request context a job was queued with."""
    from agent33.observability import context
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant

    with ExitStack() as stack:
        request_id = meta.get("request_id")
        if context.valid_request_id(request_id):
            token = context.bind(context.RequestContext(request_id=request_id,
                                                        tenant=meta.get("tenant_id")))
            stack.callback(context.reset, token)
        if meta.get("tenant_id"):
            stack.enter_context(tenant_scope(Tenant(pk=meta["tenant_id"])))
        yield


def run_job(job: Job, kwargs: dict[str, Any]) -> Any:
    """One try of `job`, inside the tenant scope and request context it was queued with."""
    kwargs, meta = split_meta(kwargs)
    with job_context(meta):
        return job.func(**kwargs)


def exception_fields(exc: BaseException) -> dict[str, str]:
    kind = type(exc)
    return {"exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
            "traceback": "".join(format_exception(exc))}


def _pending_result(task: Job, args, kwargs, backend: str) -> TaskResult:
    return TaskResult(task=task, id=get_random_string(32), status=TaskResultStatus.READY,
                      enqueued_at=timezone.now(), started_at=None, last_attempted_at=None,
                      finished_at=None, args=list(args), kwargs=kwargs, backend=backend,
                      errors=[], worker_ids=[])


def _check_plain_json(kwargs: dict[str, Any]) -> None:
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job arguments must be plain JSON (ids, not objects): {exc}") from None


class DatabaseBackend(_DatabaseBackend):
    """django-tasks-db, written in the caller's transaction (see the module docstring)."""

    task_class = Job

    def enqueue(self, task, args, kwargs):
        _check_plain_json(kwargs)
        result = super().enqueue(task, args, kwargs)
        from .waiting import notify

        notify("jobs")  # wakes an idle worker on PostgreSQL when this commits
        return result


class CeleryBackend(BaseTaskBackend):
    task_class = Job
    supports_defer = True

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        _check_plain_json(kwargs)
        countdown = None
        if task.run_after is not None:
            countdown = max(0.0, (task.run_after - timezone.now()).total_seconds())
        time_limit = (kwargs.get(META_KEY) or {}).get("time_limit") or task.time_limit
        transaction.on_commit(lambda: _publish(task, kwargs, countdown, time_limit))
        return _pending_result(task, args, kwargs, self.alias)


def _publish(task: Job, kwargs: dict[str, Any], countdown: float | None,
             time_limit: float) -> None:
    from celery import current_app

    try:
        current_app.tasks[task.job_name].apply_async(kwargs=kwargs, countdown=countdown,
                                                     time_limit=time_limit)
    except Exception as exc:  # the broker refused it: nothing will run it
        logger.exception("could not queue job %s", task.job_name)
        if task.on_enqueue_failure is None:
            raise
        plain, meta = split_meta(kwargs)
        with job_context(meta):
            task.on_enqueue_failure(plain, exc)


class ImmediateBackend(BaseTaskBackend):
    """Test-only: run once when the caller commits; errors propagate to the caller."""

    task_class = Job
    supports_defer = True

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        _check_plain_json(kwargs)
        transaction.on_commit(lambda: run_job(task, kwargs))
        return _pending_result(task, args, kwargs, self.alias)


# --- Celery ------------------------------------------------------------------------------


def register_with_celery(job: Job) -> None:
    """The Celery task of `job`, named after it: retries with the job's backoff, and a
    last failure recorded as a FAILED row of the jobs table."""
    from celery import shared_task

    def body(self, **kwargs):
        try:
            return run_job(job, kwargs)
        except Exception as exc:
            attempt = self.request.retries + 1
            if attempt < job.max_attempts:
                after = exc.after if isinstance(exc, Retry) and exc.after is not None \
                    else job.delay_before(attempt)
                raise self.retry(exc=exc, countdown=after,
                                 max_retries=job.max_attempts - 1) from exc
            record_failed(job, kwargs, exc, attempts=attempt,
                          worker_id=self.request.hostname or "celery")
            raise

    body.__name__ = body.__qualname__ = job.func.__name__
    body.__module__ = job.func.__module__
    shared_task(name=job.job_name, bind=True, acks_late=True,
                time_limit=job.time_limit)(body)


def record_failed(job: Job, kwargs: dict[str, Any], exc: BaseException, *, attempts: int,
                  worker_id: str) -> None:
    """A job that used its last try on a Celery worker, as a FAILED row of the jobs table
    (counted in /metrics, listed for staff)."""
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    DBTaskResult.objects.create(
        status=TaskResultStatus.FAILED, args_kwargs={"args": [], "kwargs": kwargs},
        priority=job.priority, task_path=job.module_path, queue_name=job.queue_name,
        backend_name="default", run_after=None, started_at=now,
        finished_at=now, worker_ids=[worker_id] * attempts, return_value=None,
        **exception_fields(exc),
    )
