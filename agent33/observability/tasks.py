"""Celery: the request id travels with the tasks a request enqueues; workers log like web
processes do; worker processes keep their metrics files in order.

Connected by agent33/celery.py, so every process that loads the Celery app (web processes
that publish, workers that run) has them.
"""

from __future__ import annotations

import logging.config

from celery import signals
from django.conf import settings

from . import context
from .metrics import clear_multiprocess_dir, mark_dead

__all__ = ["REQUEST_ID_TASK_HEADER"]

# A message header of our own: Celery puts custom headers on `task.request`.
REQUEST_ID_TASK_HEADER = "agent33_request_id"
_bound: dict[str, object] = {}  # task id → the context token to reset after the task


@signals.before_task_publish.connect
def _send_request_id(headers=None, **kwargs) -> None:
    request_id = context.current().request_id
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_TASK_HEADER, request_id)


@signals.task_prerun.connect
def _bind_request_id(task_id=None, task=None, **kwargs) -> None:
    # Eager tasks run inside the request and already see its context; only a worker's
    # message carries the header.
    request_id = getattr(task.request, REQUEST_ID_TASK_HEADER, None) if task else None
    if context.valid_request_id(request_id):
        _bound[task_id] = context.bind(context.RequestContext(request_id=request_id))


@signals.task_postrun.connect
def _unbind_request_id(task_id=None, **kwargs) -> None:
    token = _bound.pop(task_id, None)
    if token is not None:
        context.reset(token)


@signals.setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Workers log through the project's LOGGING (JSON or text, request ids) instead of
    Celery's own format; connecting this signal is how Celery is told to leave logging be."""
    logging.config.dictConfig(settings.LOGGING)


@signals.worker_init.connect
def _fresh_metrics_dir(**kwargs) -> None:
    clear_multiprocess_dir()


@signals.worker_process_shutdown.connect
def _metrics_process_dead(pid=None, **kwargs) -> None:
    if pid:
        mark_dead(pid)
