"""Execution: one attempt of a claimed request (the Celery task's body), the reaper, and the
broker-refused path.

`request_run` and `request_fail_unqueued` work on one request in the tenant scope their
caller (the task) sets. `reap_timeouts` is a cross-tenant job: it finds candidates across
tenants, then ends each one inside that request's own tenant scope.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agent33.errors import InvalidInput
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from operations.choices import ChangeCause, ChangePath
from operations.transitions import Origin

from ..choices import ArtifactOrigin, RequestState
from ..models import POLICY_DEFAULTS, Artifact, MultimodalPolicy, MultimodalRequest
from ..pricing import CostResult, cost_of, format_usd
from ..providers.base import ProviderError, ProviderOutput
from ..providers.registry import get_provider
from ..resolution import provider_call_for
from .artifacts import artifact_read, artifact_store
from .prices import price_for
from .requests import request_end
from .spend import spend_settle

__all__ = ["reap_timeouts", "request_fail_unqueued", "request_run", "timeout_message"]

logger = logging.getLogger("agent33.multimodal")

# Who ends requests when nobody asked: the worker reporting the provider's answer (the
# process's own progress), and the reaper (the service's own job).
WORKER = Origin.system("multimodal-worker", path=ChangePath.WORKER, cause=ChangeCause.PROCESS)
REAPER = Origin.system("reaper", path=ChangePath.SWEEP)


def _reaper_grace_seconds() -> float:
    return float(getattr(settings, "MULTIMODAL_REAPER_GRACE_SECONDS", 30))


def timeout_message(mm_request: MultimodalRequest) -> str:
    return f"timed out after {mm_request.requested_timeout_seconds} s"


def _costed(mm_request: MultimodalRequest, output: ProviderOutput | None
            ) -> tuple[CostResult, dict[str, Any]]:
    """The cost of what the provider produced (usage x its price row now) and the metadata
    that records it: usage, where the figures came from, cost_usd, and the price row used
    (so a later price change does not rewrite it)."""
    if output is None:
        return (CostResult(None, "the provider returned no output"),
                {"usage": {}, "cost_usd": None, "cost_note": "the provider returned no output",
                 "price": None})
    what = f"{mm_request.provider}/{output.model}"
    price = price_for(mm_request.provider, output.model)
    cost = cost_of(output.usage, price.usd_per_unit if price else None, what=what)
    metadata: dict[str, Any] = {
        "usage": output.usage,
        "usage_source": output.usage_source,
        "cost_usd": format_usd(cost.usd),
        "price": price.reference() if price else None,
    }
    if cost.usd is None:
        metadata["cost_note"] = cost.note
    return cost, metadata


def _result_fields(
    mm_request: MultimodalRequest,
    *,
    started: datetime | None,
    latency_ms: int | None,
    output: ProviderOutput | None = None,
    artifact: Artifact | None = None,
    error: str = "",
    provider_attempts: int = 1,
    cost: tuple[CostResult, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    cost_result, cost_metadata = cost or _costed(mm_request, output)
    metadata: dict[str, Any] = {
        "provider": mm_request.provider,
        "model": output.model if output else "",
        "attempts": output.attempts if output else provider_attempts,
        "execution_attempts": mm_request.attempts,
        "latency_ms": latency_ms,
        "options": mm_request.options,
        **cost_metadata,
    }
    if mm_request.claimed_at and started:
        metadata["queue_ms"] = max(
            0, round((started - mm_request.claimed_at).total_seconds() * 1000)
        )
    if error:
        metadata["error"] = error
    return {
        "cost_nano_usd": cost_result.nanos,
        "output_text": output.output_text if output else "",
        "output_artifact": artifact,
        "output_data": output.output_data if output else {},
        "metadata": metadata,
        "provider": mm_request.provider,
        "latency_ms": latency_ms,
        "started_at": started,
    }


def request_run(request_id: str, claim_token: str) -> str:
    """One execution attempt (the Celery task's body, in the request's tenant scope).
    Returns what happened, for logs: completed, failed, discarded or skipped.

    Idempotent under redelivery: the attempt starts only if the request is still
    processing under this claim, and ends only through `request_end`'s conditional UPDATE,
    so however many deliveries run, one result row is written and a request cancelled or
    reaped meanwhile keeps that state (the late output is deleted).
    """
    now = timezone.now()
    mm_request = _start_attempt(request_id, claim_token, now)
    if mm_request is None:
        return "skipped"

    def fail(message: str, *, latency_ms: int | None = None,
             output: ProviderOutput | None = None, provider_attempts: int = 1) -> str:
        ended = request_end(
            mm_request, RequestState.FAILED, origin=WORKER, error_message=message,
            claim_token=claim_token,
            result=_result_fields(mm_request, started=now, latency_ms=latency_ms,
                                  output=output, error=message,
                                  provider_attempts=provider_attempts),
        )
        return "failed" if ended else "discarded"

    remaining = (mm_request.deadline_at - now).total_seconds() if mm_request.deadline_at else 0
    if remaining <= 0:
        return fail(timeout_message(mm_request))

    data: bytes | None = None
    content_type = ""
    if mm_request.input_artifact is not None:
        try:
            data = artifact_read(mm_request.input_artifact)
        except OSError as exc:
            return fail(
                f"input artifact {mm_request.input_artifact.pk} could not be read: {exc}"
            )
        content_type = mm_request.input_artifact.content_type

    clock = time.monotonic()
    try:
        provider = get_provider(mm_request.provider)
        output = provider.run(
            mm_request.modality,
            text=mm_request.input_text,
            data=data,
            content_type=content_type,
            call=provider_call_for(mm_request, remaining,
                                   policy_cap_seconds=mm_request.policy_max_timeout_seconds),
        )
    except ProviderError as exc:
        return fail(str(exc), latency_ms=_elapsed_ms(clock), provider_attempts=exc.attempts)
    except Exception as exc:  # an engine bug must fail the request, not leave it processing
        logger.exception("provider %s crashed on request %s", mm_request.provider, request_id)
        return fail(f"{mm_request.provider}: unexpected error: {type(exc).__name__}: {exc}",
                    latency_ms=_elapsed_ms(clock))
    latency_ms = _elapsed_ms(clock)

    if timezone.now() > mm_request.deadline_at:
        # Output after the deadline is discarded: the caller was promised an answer in time.
        return fail(timeout_message(mm_request), latency_ms=latency_ms, output=output)

    artifact: Artifact | None = None
    cost = _costed(mm_request, output)
    try:
        # The output artifact and the completion commit together: a request that was
        # cancelled or reaped meanwhile leaves neither a result nor an orphaned artifact row.
        with transaction.atomic():
            if output.output_bytes is not None:
                artifact = artifact_store(
                    tenant_id=mm_request.tenant_id, actor=f"provider:{mm_request.provider}",
                    content=output.output_bytes, origin=ArtifactOrigin.OUTPUT, field="output",
                )
            if not request_end(
                mm_request,
                RequestState.COMPLETED,
                origin=WORKER,
                claim_token=claim_token,
                result=_result_fields(mm_request, started=now, latency_ms=latency_ms,
                                      output=output, artifact=artifact, cost=cost),
            ):
                raise _LateResult
    except _LateResult:
        if artifact is not None:
            artifact.file.delete(save=False)
        # The provider was paid for output nobody will see (the request was cancelled or
        # reaped meanwhile, and its reservation given back then): it is still today's spend.
        if cost[0].nanos:
            with transaction.atomic():
                spend_settle(tenant_id=mm_request.tenant_id, day=mm_request.spend_day,
                             release_nanos=0, cost_nanos=cost[0].nanos)
        return "discarded"
    except InvalidInput:
        return fail(f"{mm_request.provider}: returned output that is not a supported audio or "
                    "image format", latency_ms=latency_ms, output=output)
    return "completed"


class _LateResult(Exception):
    """The request left `processing` (cancelled, reaped) while the provider worked."""


def _start_attempt(request_id: str, claim_token: str, now: datetime) -> MultimodalRequest | None:
    """Count an attempt if the request is still processing under this claim, and return the
    row, or None: a delivery for a request that finished, was cancelled or reaped, or was
    claimed again does nothing. The count is one conditional UPDATE (so two deliveries
    count two attempts, never lose one). The row comes back with
    `policy_max_timeout_seconds`, the tenant's policy cap as it is now (the default when
    never set), which binds the engine call (see `provider_call_for`). Three plain queries:
    an annotated read (the cap as a subquery) costs more CPU than the second query."""
    started = MultimodalRequest.objects.filter(
        pk=request_id, state=RequestState.PROCESSING, claim_token=claim_token
    ).update(attempts=F("attempts") + 1, started_at=now, updated_at=now)
    if not started:
        return None
    mm_request = MultimodalRequest.objects.get(pk=request_id)
    caps = MultimodalPolicy.objects.filter(tenant_id=mm_request.tenant_id).values_list(
        "max_timeout_seconds", flat=True
    )
    mm_request.policy_max_timeout_seconds = next(
        iter(caps[:1]), POLICY_DEFAULTS["max_timeout_seconds"]
    )
    return mm_request


def _elapsed_ms(clock: float) -> int:
    return round((time.monotonic() - clock) * 1000)


def request_fail_unqueued(request_id: str, claim_token: str, reason: str, *,
                          path: str = ChangePath.API) -> None:
    """The broker refused the task: fail the request now rather than wait for the reaper
    (on the path that executed it)."""
    mm_request = MultimodalRequest.objects.filter(pk=request_id).first()
    if mm_request is not None:
        message = f"could not queue the request for execution: {reason}"
        request_end(mm_request, RequestState.FAILED,
                    origin=Origin.system("enqueue", path=path), error_message=message,
                    claim_token=claim_token,
                    result=_result_fields(mm_request, started=None, latency_ms=None,
                                          error=message))


def reap_timeouts(*, now: datetime | None = None, grace_seconds: float | None = None,
                  batch_size: int = 500) -> list[str]:
    """Fail requests still processing past their deadline plus a grace period ("timed out
    after N s"), in every tenant, each in its own tenant's scope. Returns the ids it failed.
    A worker finishing one of them later finds it failed and discards its output."""
    now = now or timezone.now()
    grace = _reaper_grace_seconds() if grace_seconds is None else grace_seconds
    cutoff = now - timedelta(seconds=grace)
    reaped: list[str] = []
    candidates = MultimodalRequest.all_tenants.filter(
        state=RequestState.PROCESSING, deadline_at__lt=cutoff
    ).order_by("deadline_at")[:batch_size]
    for mm_request in candidates:
        message = timeout_message(mm_request)
        with tenant_scope(Tenant(pk=mm_request.tenant_id)):
            if request_end(
                mm_request,
                RequestState.FAILED,
                origin=REAPER,
                error_message=message,
                claim_token=mm_request.claim_token,
                deadline_before=cutoff,
                result=_result_fields(mm_request, started=mm_request.started_at,
                                      latency_ms=None, error=message),
            ):
                reaped.append(mm_request.pk)
    if reaped:
        logger.warning("reaped %d timed-out multimodal requests", len(reaped))
    return reaped
