"""Celery tasks: run one multimodal request, reap timed-out ones.

Workers use acks_late + reject_on_worker_lost (settings), so a job whose worker died is
delivered again; `services.request_run` makes that safe (claim check, conditional finish,
one result row). Tasks take ids, never model instances. A worker has no tenant scope of its
own: `execute_request` sets the request's tenant around its work, and the reaper sets each
request's tenant as it ends it.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from . import services
from .models import MultimodalRequest

__all__ = ["enqueue_execution", "execute_request", "reap_timeouts"]

logger = logging.getLogger("agent33.multimodal")


def _tenant_of_queued_request(request_id: str) -> str | None:
    """The tenant of a request named by a message queued before messages carried it."""
    return (
        MultimodalRequest.all_tenants.filter(pk=request_id)
        .values_list("tenant_id", flat=True)
        .first()
    )


@shared_task(name="multimodal.tasks.execute_request")
def execute_request(request_id: str, claim_token: str, tenant_id: str | None = None) -> str:
    """One execution attempt of `tenant_id`'s request. `tenant_id` is None only in messages
    queued by an earlier release, which sent (request_id, claim_token)."""
    if tenant_id is None:
        tenant_id = _tenant_of_queued_request(request_id)
        if tenant_id is None:
            logger.warning("multimodal request %s no longer exists: skipped", request_id)
            return "skipped"
    with tenant_scope(Tenant(pk=tenant_id)):
        outcome = services.request_run(request_id, claim_token)
    logger.info("multimodal request %s: %s", request_id, outcome)
    return outcome


@shared_task(name="multimodal.tasks.reap_timeouts")
def reap_timeouts() -> int:
    return len(services.reap_timeouts())


def enqueue_execution(request_id: str, claim_token: str, timeout_seconds: int, *,
                      tenant_id: str, path: str = "api") -> None:
    """Queue a claimed request (called on commit of the claim). In eager mode the task runs
    right here, inside the API request."""
    grace = float(getattr(settings, "MULTIMODAL_REAPER_GRACE_SECONDS", 30))
    try:
        execute_request.apply_async(
            args=[request_id, claim_token, tenant_id],
            # A prefork child stuck in an engine that ignores its deadline is killed once
            # the reaper would have failed the request anyway.
            time_limit=timeout_seconds + grace + 5,
        )
    except Exception as exc:  # broker unreachable: fail now instead of waiting for the reaper
        logger.exception("could not queue multimodal request %s", request_id)
        with tenant_scope(Tenant(pk=tenant_id)):
            services.request_fail_unqueued(request_id, claim_token,
                                           f"{type(exc).__name__}: {exc}", path=path)
