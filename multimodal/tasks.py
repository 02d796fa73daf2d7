"""Celery tasks: run one multimodal request, reap timed-out ones.

Workers use acks_late + reject_on_worker_lost (settings), so a job whose worker died is
delivered again; `services.request_run` makes that safe (claim check, conditional finish,
one result row). Tasks take ids, never model instances, and set no tenant scope: the
services they call use the explicit all-tenants manager keyed by primary key.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from . import services

__all__ = ["enqueue_execution", "execute_request", "reap_timeouts"]

logger = logging.getLogger("agent33.multimodal")


@shared_task(name="multimodal.tasks.execute_request")
def execute_request(request_id: str, claim_token: str) -> str:
    outcome = services.request_run(request_id, claim_token)
    logger.info("multimodal request %s: %s", request_id, outcome)
    return outcome


@shared_task(name="multimodal.tasks.reap_timeouts")
def reap_timeouts() -> int:
    return len(services.reap_timeouts())


def enqueue_execution(request_id: str, claim_token: str, timeout_seconds: int) -> None:
    """Queue a claimed request (called on commit of the claim). In eager mode the task runs
    right here, inside the API request."""
    grace = float(getattr(settings, "MULTIMODAL_REAPER_GRACE_SECONDS", 30))
    try:
        execute_request.apply_async(
            args=[request_id, claim_token],
            # A prefork child stuck in an engine that ignores its deadline is killed once
            # the reaper would have failed the request anyway.
            time_limit=timeout_seconds + grace + 5,
        )
    except Exception as exc:  # broker unreachable: fail now instead of waiting for the reaper
        logger.exception("could not queue multimodal request %s", request_id)
        services.request_fail_unqueued(request_id, claim_token, f"{type(exc).__name__}: {exc}")
