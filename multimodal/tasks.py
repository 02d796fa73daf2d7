"""Jobs of multimodal: run one request, reap timed-out ones.

Engine and provider work runs only here, on a worker (`manage.py worker`'s children, or
Celery workers), never in a web process. A try that dies (worker killed) runs again;
`services.request_run` makes that safe (claim check, conditional finish, one result row).
Jobs take ids, never model instances, and run in the request's tenant scope (`enqueue`
carries the tenant); the reaper is a platform job that sets each request's tenant itself.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from agent33 import jobs
from agent33.jobs.waiting import notify

from . import services
from .selectors import request_channel

__all__ = ["enqueue_execution", "execute_request", "reap_timeouts"]

logger = logging.getLogger("agent33.multimodal")


def _fail_unqueued(kwargs: dict[str, Any], exc: BaseException) -> None:
    """The broker refused the job: fail the request now instead of waiting for the reaper
    (in the request's tenant scope, which the job carries)."""
    services.request_fail_unqueued(kwargs["request_id"], kwargs["claim_token"],
                                   f"{type(exc).__name__}: {exc}",
                                   path=kwargs.get("path", "api"))


@jobs.job("multimodal.tasks.execute_request", max_attempts=3, backoff=(1.0, 5.0),
          queue_name="default", on_enqueue_failure=_fail_unqueued)
def execute_request(*, request_id: str, claim_token: str, path: str = "api") -> str:
    """One execution attempt of a claimed request, in its tenant's scope. `path`: where it
    was executed from (api, admin), for the history of a request the queue refused."""
    outcome = services.request_run(request_id, claim_token)
    logger.info("multimodal request %s: %s", request_id, outcome)
    # Wakes a create or execute waiting for this request (PostgreSQL; others poll).
    notify(request_channel(request_id))
    return outcome


@jobs.job("multimodal.tasks.reap_timeouts", max_attempts=3, time_limit=300)
def reap_timeouts() -> int:
    return len(services.reap_timeouts())


def enqueue_execution(mm_request, claim_token: str, path: str = "api") -> None:
    """Queue a claimed request, inside the transaction that claims it. Its time limit lies
    past the request's deadline and the reaper's grace: the engine stops at the deadline,
    the reaper fails a request still processing after the grace, and only a job stuck in
    an engine that ignores its deadline reaches the limit and is killed with its
    processes."""
    grace = float(getattr(settings, "MULTIMODAL_REAPER_GRACE_SECONDS", 30))
    jobs.enqueue("multimodal.tasks.execute_request", tenant_id=mm_request.tenant_id,
                 time_limit=mm_request.requested_timeout_seconds + grace + 5,
                 request_id=mm_request.pk, claim_token=claim_token, path=path)
