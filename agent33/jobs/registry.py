"""Jobs: functions registered by name that run in the background, in every mode.

A job is a Django task (`django.tasks.Task`) with what the framework does not carry yet: a
name that is the same in every backend (the Celery task name), how often it may be tried,
how long to wait between tries, the longest one try may run, and what to do when it could
not even be queued. `@job(...)` registers the function and returns the `Job`, which stays
callable as the plain function (tests and other jobs call it directly).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.tasks import Task

__all__ = ["Job", "Retry", "get_job", "job", "registered_jobs"]

# Seconds before the 2nd, 3rd, ... try; the last one repeats. Jitter of ±20 % spreads a
# burst of failures (a provider's outage) instead of retrying them all at once.
DEFAULT_BACKOFF: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0)
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIME_LIMIT = 300.0
JITTER = 0.2


class Retry(Exception):
    """Raised by a job to be tried again after `after` seconds (a receiver's Retry-After)
    instead of its backoff schedule. It still counts as an attempt."""

    def __init__(self, reason: str = "", *, after: float | None = None) -> None:
        super().__init__(reason or "retry requested")
        self.after = after


@dataclass(frozen=True, slots=True, kw_only=True)
class Job(Task):
    job_name: str = ""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: tuple[float, ...] = DEFAULT_BACKOFF
    time_limit: float = DEFAULT_TIME_LIMIT
    # Called with (kwargs, exception), in the job's tenant scope, when the job could not
    # be handed to the broker at all
    # (Celery mode: the broker refused it after the caller's commit).
    on_enqueue_failure: Callable[[dict[str, Any], BaseException], None] | None = None

    def __call__(self, **kwargs: Any) -> Any:
        return self.func(**kwargs)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number `attempt + 1`, after try `attempt` failed."""
        base = self.backoff[min(attempt, len(self.backoff)) - 1] if self.backoff else 0.0
        return base * random.uniform(1 - JITTER, 1 + JITTER)


_registry: dict[str, Job] = {}


def job(name: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: tuple[float, ...] = DEFAULT_BACKOFF, time_limit: float = DEFAULT_TIME_LIMIT,
        queue_name: str = "default",
        on_enqueue_failure: Callable[[dict[str, Any], BaseException], None] | None = None,
        ) -> Callable[[Callable[..., Any]], Job]:
    """Register a module-level function as the job `name`. Its arguments are keyword
    arguments of plain JSON (ids, strings, numbers, lists, dicts), never model instances."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def register(func: Callable[..., Any]) -> Job:
        from .backends import register_with_celery

        registered = Job(func=func, queue_name=queue_name, job_name=name,
                         max_attempts=max_attempts, backoff=tuple(backoff),
                         time_limit=float(time_limit), on_enqueue_failure=on_enqueue_failure)
        existing = _registry.get(name)
        if existing is not None and existing.module_path != registered.module_path:
            raise ValueError(f"job {name!r} is already registered by {existing.module_path}")
        _registry[name] = registered
        register_with_celery(registered)
        return registered

    return register


def get_job(name: str) -> Job:
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(f"no job is registered as {name!r}") from None


def registered_jobs() -> dict[str, Job]:
    return dict(_registry)
