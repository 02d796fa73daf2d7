"""Decline evaluations too large to run inside the request that recorded the events.

With a broker, evaluations are Celery tasks. Without one (the embedded default) there is no
worker to hand them to, so a request of a few keys evaluates them right after its commit,
and a bulk touching more keys than `AGENT33_DECLINES_INLINE_KEYS` hands them to one
background thread of this process: its response does not wait for the evaluation.

The queue is short on purpose. When it is full (a tenant sending large bulks faster than
they can be evaluated), the next such request evaluates its own keys before it answers, so
the sender slows itself down instead of growing this process's memory or backlog. On exit
the process finishes what is queued (up to a timeout), so keys are not silently skipped by a
restart.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable

from django.db import close_old_connections, connections

__all__ = ["evaluate_in_background", "wait_until_idle"]

logger = logging.getLogger("agent33.outcomes")

_MAX_WAITING = 4  # evaluations queued per process before senders evaluate their own
_EXIT_TIMEOUT_SECONDS = 60
_NICENESS = 10

_jobs: queue.Queue[tuple[str, list[tuple[str, ...]]]] = queue.Queue(maxsize=_MAX_WAITING)
_start_lock = threading.Lock()
_thread: threading.Thread | None = None


def evaluate_in_background(tenant_id: str, keys: Iterable[tuple[str, ...]]) -> bool:
    """Queue an evaluation for this process's background thread; False when the queue is
    full (the caller evaluates inline)."""
    _ensure_thread()
    try:
        _jobs.put_nowait((tenant_id, sorted(set(keys))))
    except queue.Full:
        return False
    return True


def wait_until_idle(timeout: float = 60.0) -> bool:
    """Block until every queued evaluation has run (tests, benchmarks, shutdown); False if
    `timeout` seconds passed first."""
    deadline = time.monotonic() + timeout
    with _jobs.all_tasks_done:
        while _jobs.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _jobs.all_tasks_done.wait(remaining)
    return True


def _ensure_thread() -> None:
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_work, name="declines-evaluator", daemon=True)
            _thread.start()


def _work() -> None:
    from agent33.tenancy.models import Tenant

    from . import declines

    # Background work yields the CPU to requests, this process's and its neighbours': on
    # Linux a thread has its own nice value (elsewhere this is skipped).
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICENESS)
    while True:
        tenant_id, keys = _jobs.get()
        try:
            close_old_connections()
            tenant = Tenant.objects.get(pk=tenant_id)
            declines.declines_evaluate(tenant=tenant, keys=keys)
        except Exception:  # one failed evaluation must not stop the thread
            logger.exception("Could not evaluate %d trend keys of %s", len(keys), tenant_id)
        finally:
            connections.close_all()  # this thread's own connection
            _jobs.task_done()


@atexit.register
def _finish_on_exit() -> None:
    if _thread is not None and _thread.is_alive() and not wait_until_idle(_EXIT_TIMEOUT_SECONDS):
        logger.error("Exited with trend evaluations still queued")
