"""Execution: one attempt of a claimed request (the Celery task's body), the reaper, and the
broker-refused path.

`request_run` and `request_fail_unqueued` work on one request in the tenant scope their
caller (the task) sets. `reap_timeouts` is a cross-tenant job: it finds candidates across
tenants, then ends each one inside that request's own tenant scope.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
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
from ..models import (
    POLICY_DEFAULTS,
    Artifact,
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
)
from ..pricing import CostResult, cost_of, format_usd, from_nanos, to_nanos
from ..providers.base import Provider, ProviderCall, ProviderError, ProviderOutput
from ..providers.registry import get_provider
from ..resolution import provider_call_for
from .artifacts import artifact_insert, artifact_prepare, artifact_read, removed_unless_stored
from .policy import policy_for
from .prices import price_for
from .requests import request_end
from .spend import (
    OFFLINE_RESERVE_FACTOR,
    Estimate,
    cost_estimate,
    input_facts,
    limit_nanos,
    spend_reserve_retry,
    spend_settle,
    throughput_record,
)

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


@dataclass(frozen=True)
class Attempted:
    """What an execution consumed, whatever its end: the answer (if any), attempts the
    provider may have billed without answering, and for an offline engine that failed or
    timed out, the compute it spent first."""

    model: str
    estimate: Estimate | None
    output: ProviderOutput | None = None
    unanswered: int = 0
    failed_compute_seconds: float | None = None


# An ending before any engine ran (the broker refused the job, the reaper).
NOTHING_SPENT = Attempted(model="", estimate=None)


def _costed(mm_request: MultimodalRequest, spent: Attempted
            ) -> tuple[CostResult, dict[str, Any]]:
    """What the execution costs (DESIGN §8.2: every billed-or-maybe-billed attempt counts)
    and the metadata that records it: usage and where the figures came from, cost_usd,
    each charge, the estimate beside them, and the price row used (so a later price change
    does not rewrite it). Unknown stays unknown: a priced unit the usage lacks, or no price,
    gives cost_usd null with a cost_note, never a guess."""
    model = spent.output.model if spent.output is not None else spent.model
    what = f"{mm_request.provider}/{model}"
    price = price_for(mm_request.provider, model)
    per_unit = price.usd_per_unit if price else None
    charges: list[dict[str, Any]] = []
    notes: list[str] = []
    usage: dict[str, Any] = {}
    source = ""
    if spent.output is not None:
        usage, source = spent.output.usage, spent.output.usage_source
        answered = cost_of(usage, per_unit, what=what)
        charges.append({"for": "the answer", "cost_usd": format_usd(answered.usd)})
        if answered.usd is None:
            notes.append(answered.note)
    elif spent.failed_compute_seconds is not None:
        usage, source = {"compute_seconds": round(spent.failed_compute_seconds, 3)}, "engine"
        compute = cost_of(usage, per_unit, what=what)
        charges.append({"for": "compute before the failure", "cost_usd": format_usd(compute.usd)})
        if compute.usd is None:
            notes.append(compute.note)
    if spent.unanswered:
        each = spent.estimate.nanos if spent.estimate is not None else None
        total = None if each is None else from_nanos(each * spent.unanswered)
        charges.append({"for": f"{spent.unanswered} unanswered attempt(s) the provider may "
                               "have billed, at the estimate", "cost_usd": format_usd(total)})
        if each is None:
            notes.append(spent.estimate.note if spent.estimate else "no estimate")
    if not charges:
        note = "the provider returned no output"
        return (CostResult(None, note), {"usage": {}, "cost_usd": None, "cost_note": note,
                                         "charges": [], "price": None,
                                         **_estimate_metadata(spent.estimate)})
    known = [c["cost_usd"] for c in charges]
    cost = CostResult(None, "; ".join(notes)) if None in known else CostResult(
        from_nanos(sum(to_nanos(Decimal(amount)) for amount in known)))
    metadata: dict[str, Any] = {
        "usage": usage,
        "usage_source": source,
        "cost_usd": format_usd(cost.usd),
        "charges": charges,
        "unanswered_attempts": spent.unanswered,
        "price": price.reference() if price else None,
        **_estimate_metadata(spent.estimate),
    }
    if cost.usd is None:
        metadata["cost_note"] = cost.note
    return cost, metadata


def _estimate_metadata(estimate: Estimate | None) -> dict[str, Any]:
    """The estimate beside the actual cost (offline engines: at their measured
    throughput)."""
    if estimate is None:
        return {}
    return {"estimate": {"usage": estimate.usage, "cost_usd": format_usd(
        None if estimate.nanos is None else from_nanos(estimate.nanos))}}


def _result_fields(
    mm_request: MultimodalRequest,
    *,
    started: datetime | None,
    latency_ms: int | None,
    spent: Attempted,
    artifact: Artifact | None = None,
    error: str = "",
    provider_attempts: int = 1,
    cost: tuple[CostResult, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    output = spent.output
    cost_result, cost_metadata = cost or _costed(mm_request, spent)
    metadata: dict[str, Any] = {
        "provider": mm_request.provider,
        "model": output.model if output else spent.model,
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
    spent = NOTHING_SPENT

    def fail(message: str, *, latency_ms: int | None = None, provider_attempts: int = 1) -> str:
        result = _result_fields(mm_request, started=now, latency_ms=latency_ms, spent=spent,
                                error=message, provider_attempts=provider_attempts)
        if request_end(mm_request, RequestState.FAILED, origin=WORKER, error_message=message,
                       claim_token=claim_token, result=result):
            return "failed"
        # Cancelled or reaped meanwhile: what the failed attempts cost still counts.
        _charge_discarded(mm_request, claim_token, _costed(mm_request, spent),
                          latency_ms=latency_ms, started=now)
        return "discarded"

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

    try:
        engine = get_provider(mm_request.provider)
    except ProviderError as exc:
        return fail(str(exc))
    clock = time.monotonic()
    reserved_seconds: float | None = None
    try:
        call = provider_call_for(mm_request, remaining,
                                 policy_cap_seconds=mm_request.policy_max_timeout_seconds)
        model = call.model or engine.default_models.get(mm_request.modality, "")
        spent = Attempted(model=model, estimate=cost_estimate(
            provider=mm_request.provider, modality=mm_request.modality, model=model,
            options=mm_request.options, facts=input_facts(mm_request.modality,
                                                          text=mm_request.input_text,
                                                          data=data)))
        call, reserved_seconds = _held_to_reservation(mm_request, claim_token, engine, call,
                                                      spent.estimate)
        clock = time.monotonic()
        output = engine.run(mm_request.modality, text=mm_request.input_text, data=data,
                            content_type=content_type, call=call)
    except ProviderError as exc:
        elapsed = time.monotonic() - clock
        # Stopped at its reservation, an engine is charged the compute the reservation pays
        # for: the moments it took to stop are the platform's, not the tenant's.
        used = elapsed if reserved_seconds is None else min(elapsed, reserved_seconds)
        spent = replace(spent, unanswered=exc.unanswered_attempts,
                        failed_compute_seconds=used if engine.size_unit else None)
        message = str(exc)
        if reserved_seconds is not None and elapsed >= reserved_seconds * 0.95:
            message = (f"{mm_request.provider}: stopped after {reserved_seconds:.3g} s of "
                       f"compute, the {OFFLINE_RESERVE_FACTOR}x of its estimate reserved "
                       "against the tenant's daily spend limit")
        return fail(message, latency_ms=_elapsed_ms(clock), provider_attempts=exc.attempts)
    except Exception as exc:  # an engine bug must fail the request, not leave it processing
        logger.exception("provider %s crashed on request %s", mm_request.provider, request_id)
        if engine.size_unit:
            spent = replace(spent, failed_compute_seconds=time.monotonic() - clock)
        return fail(f"{mm_request.provider}: unexpected error: {type(exc).__name__}: {exc}",
                    latency_ms=_elapsed_ms(clock))
    latency_ms = _elapsed_ms(clock)
    spent = replace(spent, output=output, unanswered=output.unanswered_attempts)

    if timezone.now() > mm_request.deadline_at:
        # Output after the deadline is discarded: the caller was promised an answer in time.
        return fail(timeout_message(mm_request), latency_ms=latency_ms)

    cost = _costed(mm_request, spent)
    try:
        # The output's file is written before any lock; its row, the usage it adds and the
        # completion commit together, or the file is removed: a request cancelled or reaped
        # meanwhile leaves neither a result nor an orphaned artifact.
        artifact = artifact_prepare(
            tenant_id=mm_request.tenant_id, actor=f"provider:{mm_request.provider}",
            content=output.output_bytes, origin=ArtifactOrigin.OUTPUT, field="output",
        ) if output.output_bytes is not None else None
        with removed_unless_stored(artifact), transaction.atomic():
            # Lock order (README): the request's row, then storage usage, then the daily
            # spend row (request_end).
            if not _lock_claimed(request_id, claim_token):
                raise _LateResult
            if artifact is not None:
                artifact_insert(artifact, field="output")
            if not request_end(
                mm_request,
                RequestState.COMPLETED,
                origin=WORKER,
                claim_token=claim_token,
                result=_result_fields(mm_request, started=now, latency_ms=latency_ms,
                                      spent=spent, artifact=artifact, cost=cost),
            ):
                raise _LateResult
            if engine.size_unit:
                transaction.on_commit(partial(
                    throughput_record, provider=mm_request.provider,
                    modality=mm_request.modality, usage=output.usage))
    except _LateResult:
        _charge_discarded(mm_request, claim_token, cost, latency_ms=latency_ms, started=now)
        return "discarded"
    except InvalidInput:
        return fail(f"{mm_request.provider}: returned output that is not a supported audio or "
                    "image format", latency_ms=latency_ms)
    return "completed"


def _held_to_reservation(mm_request: MultimodalRequest, claim_token: str, engine: Provider,
                         call: ProviderCall, estimate: Estimate | None
                         ) -> tuple[ProviderCall, float | None]:
    """A request that reserved against a daily spend limit may cost no more than it
    reserved: an offline engine gets only the compute time its reservation pays for (the
    call's deadline moves in; returned as the second value), and a cloud attempt the
    provider may have billed is repeated only after one more estimate is reserved."""
    if not mm_request.reserved_nano_usd or mm_request.spend_day is None:
        return call, None
    if engine.size_unit:
        estimated = (mm_request.estimated_usage or {}).get("compute_seconds")
        if estimated is None:
            return call, None
        seconds = OFFLINE_RESERVE_FACTOR * float(estimated)
        if seconds >= call.remaining():
            return call, None
        return replace(call, deadline=time.monotonic() + seconds), seconds
    limit = limit_nanos(policy_for(Tenant(pk=mm_request.tenant_id)))
    if estimate is None or estimate.nanos is None or limit is None:
        return call, None

    def reserve_retry() -> str | None:
        if spend_reserve_retry(mm_request=mm_request, claim_token=claim_token,
                               nanos=estimate.nanos, limit=limit):
            return None
        return "the tenant's daily spend limit has no room for another paid attempt"

    return replace(call, before_paid_retry=reserve_retry), None


def _charge_discarded(mm_request: MultimodalRequest, claim_token: str,
                      cost: tuple[CostResult, dict[str, Any]], *, latency_ms: int | None,
                      started: datetime) -> None:
    """The provider was paid for an answer (or attempts) nobody will see: the request was
    cancelled or reaped while it worked, and its reservation given back then. The cost is
    still the day's spend, and it is recorded on the request's result (a cancelled request
    gets one holding only that cost; a reaped one's failed result adds it), so the day's
    spend stays the sum of its results' costs. A request executed again since has a new
    claim and will have its own result: then only the spend counts it."""
    nanos = cost[0].nanos
    if not nanos:
        return
    charge = {"for": "an answer that came after the request had ended (not kept)",
              "cost_usd": format_usd(from_nanos(nanos))}
    with transaction.atomic():
        state = (MultimodalRequest.objects.select_for_update(of=("self",), no_key=True)
                 .filter(pk=mm_request.pk, claim_token=claim_token)
                 .values_list("state", flat=True).first())
        if state is not None:
            result = MultimodalResult.objects.filter(request_id=mm_request.pk).first()
            if result is None:
                MultimodalResult.objects.create(
                    tenant_id=mm_request.tenant_id, request_id=mm_request.pk, state=state,
                    provider=mm_request.provider, cost_nano_usd=nanos, latency_ms=latency_ms,
                    started_at=started, metadata={**cost[1], "charges": [charge],
                                                  "discarded": True})
            else:
                total = (result.cost_nano_usd or 0) + nanos
                result.cost_nano_usd = total
                result.metadata = {**result.metadata,
                                   "charges": [*result.metadata.get("charges", []), charge],
                                   "cost_usd": format_usd(from_nanos(total))}
                result.save(update_fields=["cost_nano_usd", "metadata"])
        spend_settle(tenant_id=mm_request.tenant_id, day=mm_request.spend_day,
                     release_nanos=0, cost_nanos=nanos)


class _LateResult(Exception):
    """The request left `processing` (cancelled, reaped) while the provider worked."""


def _lock_claimed(request_id: str, claim_token: str) -> bool:
    """Lock the request's row if it is still processing under this claim (in the caller's
    transaction)."""
    return bool(list(
        MultimodalRequest.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk=request_id, state=RequestState.PROCESSING, claim_token=claim_token)
        .values_list("pk", flat=True)
    ))


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
                                          error=message, spent=NOTHING_SPENT))


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
                                      latency_ms=None, error=message,
                                          spent=NOTHING_SPENT),
            ):
                reaped.append(mm_request.pk)
    if reaped:
        logger.warning("reaped %d timed-out multimodal requests", len(reaped))
    return reaped
