"""Requests: creation, execute, cancel, and the one place a request ends.

Every state move (execute's claim, every ending) goes through operations' one status change
(`operations.transitions.apply_status_changes`): the row is locked, the move checked against
`REQUEST_MACHINE` (and, for endings, the claim that runs it), saved and recorded in the
process history in one transaction, so concurrent callers (a cancel racing a worker's
finish, two deliveries of one task) cannot both win. Every ending (completed, failed,
cancelled) goes through `request_end()`, which also writes the result row, settles the
claim's spend and calls `request_ended()` (the outcome events) in the same commit.

Every claim (create with execute_now, execute) counts on the tenant's daily spend, and with a
limit reserves its estimated cost in the transaction that stores the claim (services/spend.py).

Everything here runs in the caller's tenant scope: the API's token, the admin's staff scope,
or the scope a task or the reaper sets around one request's work.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agent33.auth.scopes import MULTIMODAL_WRITE, WORKFLOWS_EXECUTE
from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.tenancy.models import Tenant
from operations.choices import ChangePath, HistoryAction, ProcessType
from operations.transitions import Origin, ProcessKind, apply_status_changes

from ..choices import (
    CONTENT_TYPES_FOR_INPUT,
    REQUEST_MACHINE,
    ArtifactOrigin,
    Modality,
    RequestState,
)
from ..metrics import record_spend
from ..models import Artifact, MultimodalPolicy, MultimodalRequest, MultimodalResult
from ..pricing import format_usd, from_nanos
from ..providers.base import OptionsInvalid
from ..providers.registry import get_provider
from ..resolution import model_for_request, resolve_provider
from ..selectors import request_reloaded, results_of
from ..sniffing import SNIFF_BYTES, sniff_content_type
from .artifacts import (
    artifact_insert,
    artifact_prepare,
    check_artifact_size,
    removed_unless_stored,
)
from .policy import policy_for
from .spend import SpendPlan, input_facts, spend_plan, spend_reserve, spend_settle

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_CANCEL_REASON",
    "REQUEST_KIND",
    "request_cancel",
    "request_create",
    "request_end",
    "request_ended",
    "request_execute",
]

logger = logging.getLogger("agent33.multimodal")

DEFAULT_TIMEOUT_SECONDS = 60
MAX_CANCEL_REASON = 500

# A multimodal request as operations' one status change sees it (registered from
# MultimodalConfig.ready). Its one control, cancel, is open to the hub's operators
# (workflows:execute) and to the request's own API clients (multimodal:write) alike, on
# every path: each path's route already demands one of the two.
REQUEST_KIND = ProcessKind(
    MultimodalRequest, ProcessType.MULTIMODAL_REQUEST.value, REQUEST_MACHINE,
    status_field="state", control_scopes=(WORKFLOWS_EXECUTE, MULTIMODAL_WRITE),
)


# --- creation ----------------------------------------------------------------------------


def _base64_size_estimate(text: str) -> int:
    compact = "".join(text.split())
    return len(compact) * 3 // 4 - compact[-2:].count("=")


def _decode_base64(text: str) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "input_artifact_base64 is not valid base64.",
            code="invalid_base64",
            field="input_artifact_base64",
        ) from None


def _check_input_type(modality: str, content_type: str, *, field: str) -> None:
    accepted = CONTENT_TYPES_FOR_INPUT[modality]
    if content_type not in accepted:
        wanted = "audio (WAV, FLAC, OGG, MP3)" if modality == Modality.SPEECH_TO_TEXT \
            else "an image (PNG, JPEG, WebP, GIF)"
        raise InvalidInput(
            f"{field} is {content_type or 'not a supported file type'}; {modality} needs "
            f"{wanted}.",
            code="wrong_content_type",
            field=field,
        )


def _validated_options(provider: str, modality: str, options: dict[str, Any],
                       input_text: str) -> dict[str, Any]:
    """The options the provider accepts, checked; 400 `invalid_option` naming each bad one
    (`errors: {"options.voice": [...]}`)."""
    engine = get_provider(provider)
    try:
        cleaned = engine.validate_options(modality, options)
    except OptionsInvalid as exc:
        errors = {f"options.{name}": messages for name, messages in exc.errors.items()}
        first, messages = next(iter(errors.items()))
        raise InvalidInput(f"{first}: {messages[0]} (provider {provider}, {modality}).",
                           code="invalid_option", field=first, errors=errors) from None
    if modality == Modality.VISION_ANALYSIS and input_text and "prompt" in cleaned:
        raise InvalidInput(
            "options.prompt: send the question about the image as input_text or as "
            "options.prompt, not both.", code="invalid_option", field="options.prompt")
    return cleaned


def _plan_spend(tenant: Tenant, policy: MultimodalPolicy, provider: str, modality: str,
                options: dict[str, Any], facts_reader) -> SpendPlan:
    limited = policy.daily_spend_limit_usd is not None
    return spend_plan(
        tenant=tenant, policy=policy, provider=provider, modality=modality, options=options,
        model=model_for_request(tenant, provider, modality, options) if limited else "",
        facts_reader=facts_reader,
    )


def request_create(
    *,
    tenant: Tenant,
    actor: str,
    modality: str,
    input_text: str = "",
    input_artifact_id: str = "",
    input_artifact_base64: str = "",
    requested_timeout_seconds: int | None = None,
    requested_by: str = "",
    execute_now: bool = True,
    provider: str = "",
    options: dict[str, Any] | None = None,
    path: str = ChangePath.API,
) -> MultimodalRequest:
    """Check the request against the tenant's policy, then its content, then the provider's
    options, then store it (and its inline input); with `execute_now` also claim it for
    execution in the same commit, reserving its estimated cost when the tenant has a daily
    spend limit (429 `spend_limit_reached`, and nothing stored, when it would pass it)."""
    policy = policy_for(tenant)

    # 1. Policy, in the contract's order, so the error names the violated limit first.
    if modality not in policy.allowed_modalities:
        allowed = ", ".join(policy.allowed_modalities) or "none"
        raise InvalidInput(
            f"Modality {modality} is not allowed by the tenant policy "
            f"(allowed_modalities: {allowed}).",
            code="modality_not_allowed",
            field="modality",
        )
    if len(input_text) > policy.max_text_chars:
        raise InvalidInput(
            f"input_text has {len(input_text)} characters, over the tenant policy's "
            f"max_text_chars ({policy.max_text_chars}).",
            code="max_text_chars",
            field="input_text",
        )
    if requested_timeout_seconds is None:
        requested_timeout_seconds = min(DEFAULT_TIMEOUT_SECONDS, policy.max_timeout_seconds)
    if requested_timeout_seconds > policy.max_timeout_seconds:
        raise InvalidInput(
            f"requested_timeout_seconds is {requested_timeout_seconds}, over the tenant "
            f"policy's max_timeout_seconds ({policy.max_timeout_seconds}).",
            code="max_timeout_seconds",
            field="requested_timeout_seconds",
        )
    if input_artifact_id and input_artifact_base64:
        raise InvalidInput(
            "Send input_artifact_id or input_artifact_base64, not both.",
            code="ambiguous_input",
            field="input_artifact_base64",
        )
    artifact: Artifact | None = None
    if input_artifact_id:
        # Another tenant's artifact is indistinguishable from a missing one.
        artifact = Artifact.objects.filter(tenant=tenant, pk=input_artifact_id).first()
        if artifact is None:
            raise InvalidInput(
                f"input_artifact_id: no artifact {input_artifact_id!r} exists.",
                code="unknown_artifact",
                field="input_artifact_id",
            )
        check_artifact_size(artifact.size_bytes, policy, field="input_artifact_id")
    if input_artifact_base64:
        # Refuse an oversized payload before decoding it; then check the exact size.
        check_artifact_size(_base64_size_estimate(input_artifact_base64), policy,
                            field="input_artifact_base64")

    # 2. Input presence and content.
    inline: bytes | None = None
    if modality == Modality.TEXT_TO_SPEECH:
        if artifact is not None or input_artifact_base64:
            raise InvalidInput(
                "text_to_speech takes input_text only, not an input artifact.",
                code="unexpected_input",
                field="input_artifact_id" if artifact is not None else "input_artifact_base64",
            )
        if not input_text.strip():
            raise InvalidInput("text_to_speech needs input_text.", code="missing_input",
                               field="input_text")
    else:
        if artifact is None and not input_artifact_base64:
            raise InvalidInput(
                f"{modality} needs input_artifact_id or input_artifact_base64.",
                code="missing_input",
                field="input_artifact_id",
            )
        if input_artifact_base64:
            inline = _decode_base64(input_artifact_base64)
            check_artifact_size(len(inline), policy, field="input_artifact_base64")
            if not inline:
                raise InvalidInput("input_artifact_base64 is empty.", code="missing_input",
                                   field="input_artifact_base64")
            _check_input_type(modality, sniff_content_type(inline[:SNIFF_BYTES]) or "",
                              field="input_artifact_base64")
        else:
            _check_input_type(modality, artifact.content_type, field="input_artifact_id")

    provider_name = resolve_provider(tenant, modality, provider)
    options = _validated_options(provider_name, modality, options or {}, input_text)
    plan = _plan_spend(
        tenant, policy, provider_name, modality, options,
        lambda: input_facts(modality, text=input_text, data=inline, artifact=artifact),
    ) if execute_now else None
    reserving = plan is not None and plan.limit_nanos is not None  # only with execute_now

    # The inline input's file is written before any lock is taken; its row commits with
    # the request or the file is removed.
    prepared = artifact_prepare(tenant_id=tenant.pk, actor=actor, content=inline,
                                origin=ArtifactOrigin.INLINE,
                                field="input_artifact_base64") if inline is not None else None
    # The request row, its live-hub log row (operations.changelog), its job, and any
    # reservation or inline input artifact commit together.
    with removed_unless_stored(prepared), transaction.atomic():
        # Lock order (README): storage usage, then the daily spend row.
        if prepared is not None:
            artifact_insert(prepared, field="input_artifact_base64", policy=policy)
            artifact = prepared
        if reserving:
            # A refused request stores nothing: the transaction rolls back, input included.
            spend_reserve(tenant_id=tenant.pk, plan=plan)
        # With execute_now the row is born claimed (pending → processing within this one
        # statement), so no other caller can ever see it pending.
        claim = {**_claim_fields(requested_timeout_seconds), **plan.claim_fields()} \
            if plan is not None else {}
        mm_request = MultimodalRequest.objects.create(
            tenant=tenant,
            modality=modality,
            provider=provider_name,
            input_text=input_text,
            input_artifact=artifact,
            requested_timeout_seconds=requested_timeout_seconds,
            requested_by=requested_by,
            created_by=actor,
            options=options,
            **claim,
        )
        if execute_now:
            _enqueue(mm_request, claim["claim_token"], path)
    return request_reloaded(mm_request)


# --- execute and cancel ------------------------------------------------------------------


def _state_of(mm_request: MultimodalRequest) -> str:
    state = (
        MultimodalRequest.objects.filter(pk=mm_request.pk)
        .values_list("state", flat=True)
        .first()
    )
    if state is None:
        raise NotFound(f"Request {mm_request.pk} does not exist.")
    return state


def _claim_fields(timeout_seconds: int) -> dict[str, Any]:
    now = timezone.now()
    return {
        "state": RequestState.PROCESSING,
        "claim_token": secrets.token_hex(16),
        "claimed_at": now,
        "deadline_at": now + timedelta(seconds=timeout_seconds),
        "started_at": None,
        "finished_at": None,
        "error_message": "",
        "updated_at": now,
    }


def _enqueue(mm_request: MultimodalRequest, claim_token: str, path: str) -> None:
    """Queue the claim's execution in the claim's own transaction: the job exists exactly
    when the claim does (agent33.jobs.enqueue)."""
    from .. import tasks  # the task module imports this package

    tasks.enqueue_execution(mm_request, claim_token, path)


def _sources_text(target: str) -> str:
    return " or ".join(REQUEST_MACHINE.sources_of(target))


def _not_executable(mm_request: MultimodalRequest, state: str) -> StateConflict:
    return StateConflict(
        f"Request {mm_request.pk} is {state}; only "
        f"{_sources_text(RequestState.PROCESSING)} requests can be executed.",
    )


def _check_executable(mm_request: MultimodalRequest) -> None:
    state = _state_of(mm_request)
    if state not in REQUEST_MACHINE.sources_of(RequestState.PROCESSING):
        raise _not_executable(mm_request, state)


def request_execute(*, mm_request: MultimodalRequest, origin: Origin) -> MultimodalRequest:
    """Claim a pending (or failed) request and queue it: one status change and its job in
    one transaction. 409 when processing, completed or cancelled; 429 when its estimated
    cost would pass the tenant's daily spend limit (the request stays as it was)."""
    tenant = Tenant(pk=mm_request.tenant_id)
    policy = policy_for(tenant)
    if policy.daily_spend_limit_usd is not None:
        # A request that cannot be executed is a 409 before any estimate or reservation.
        _check_executable(mm_request)
    plan = _plan_spend(
        tenant, policy, mm_request.provider, mm_request.modality,
        mm_request.options, lambda: input_facts(mm_request.modality,
                                                text=mm_request.input_text,
                                                artifact=mm_request.input_artifact),
    )
    claim = {**_claim_fields(mm_request.requested_timeout_seconds), **plan.claim_fields()}
    claim.pop("state")  # the status change sets it
    with transaction.atomic():
        # Lock order (README): the request's row before the daily spend row, as every
        # ending takes them; then the reservation, rolled back with the transaction when
        # the claim below finds the request taken.
        list(MultimodalRequest.objects.select_for_update(of=("self",), no_key=True)
             .filter(pk=mm_request.pk).values_list("pk", flat=True))
        spend_reserve(tenant_id=mm_request.tenant_id, plan=plan)
        claimed = apply_status_changes(
            MultimodalRequest, [mm_request.pk], target=RequestState.PROCESSING,
            origin=origin, changes=claim, move=HistoryAction.EXECUTE,
        )
        if not claimed.applied:
            raise _not_executable(mm_request, _state_of(mm_request))
        # Executing a failed request again: its old (failed) result gives way to the new run.
        results_of(mm_request).delete()
        _enqueue(mm_request, claim["claim_token"], origin.path)
    logger.info("multimodal request %s executed by %s", mm_request.pk, origin.actor)
    return request_reloaded(mm_request)


def request_cancel(
    *, mm_request: MultimodalRequest, origin: Origin, reason: str = ""
) -> MultimodalRequest:
    """Cancel a pending or processing request; a running provider's late output is then
    discarded by the task. Cancelling a cancelled request changes nothing; completed or
    failed → 409. `POST /v1/multimodal/requests/{id}/cancel`, the hub's cancel control and
    the admin action all call this. A cancellation is never an outcome: it records no
    outcome event."""
    if len(reason) > MAX_CANCEL_REASON:
        raise InvalidInput(f"reason is longer than {MAX_CANCEL_REASON} characters.",
                           field="reason")
    # Ending under the claim this copy was read with releases exactly that claim's
    # reservation. A request failed and executed again since it was read has a new claim:
    # read it again and cancel that one.
    for _ in range(3):
        ended = request_end(
            mm_request,
            RequestState.CANCELLED,
            origin=origin,
            reason=reason,
            claim_token=mm_request.claim_token,
            extra={"cancelled_by": origin.actor, "cancel_reason": reason},
        )
        if ended:
            break
        fresh = MultimodalRequest.objects.filter(pk=mm_request.pk).first()
        if fresh is None or fresh.claim_token == mm_request.claim_token:
            break
        mm_request = fresh
    if not ended:
        state = _state_of(mm_request)
        if state != RequestState.CANCELLED:
            raise StateConflict(
                f"Request {mm_request.pk} is {state}; only "
                f"{_sources_text(RequestState.CANCELLED)} requests can be cancelled.",
            )
    return request_reloaded(mm_request)


# --- the end -------------------------------------------------------------------------------


def request_end(
    mm_request: MultimodalRequest,
    target: str,
    *,
    origin: Origin,
    error_message: str = "",
    reason: str | None = None,
    result: dict[str, Any] | None = None,
    claim_token: str | None = None,
    extra: dict[str, Any] | None = None,
    deadline_before: datetime | None = None,
) -> bool:
    """THE place where a request ends (completed, failed or cancelled): the one status
    change (only under `claim_token` / with a deadline before `deadline_before`, when
    given; with its history row, whose reason is `reason` or else the error), then the
    result row, the claim's spend (its reservation given back, the result's
    `cost_nano_usd` counted) and `request_ended()`'s outcome events, all in one
    transaction. Returns False, changing nothing, when the request had already moved on or
    the move is refused.

    The reservation released is the one on the locked row of the claim being ended (every
    caller passes `claim_token`)."""
    now = timezone.now()
    where = Q()
    if claim_token is not None:
        where &= Q(claim_token=claim_token)
    if deadline_before is not None:
        where &= Q(deadline_at__lt=deadline_before)
    # No savepoint when nested: a caller that wraps this (request_run, to store the output
    # artifact in the same commit) rolls back as a whole.
    with transaction.atomic(savepoint=False):
        ended = apply_status_changes(
            MultimodalRequest, [mm_request.pk], target=target, origin=origin, where=where,
            changes={"error_message": error_message, "finished_at": now, **(extra or {})},
            reason=error_message[:2000] if reason is None else reason,
        )
        if not ended.applied:
            return False
        if result is not None:
            MultimodalResult.objects.create(
                tenant_id=mm_request.tenant_id, request_id=mm_request.pk, state=target,
                **result,
            )
        cost_nanos = (result or {}).get("cost_nano_usd")
        # The locked row's figures: the claim may have reserved more since the caller read
        # it (a paid retry's top-up).
        claim = ended.applied[0].obj
        spend_settle(tenant_id=claim.tenant_id, day=claim.spend_day,
                     release_nanos=claim.reserved_nano_usd, cost_nanos=cost_nanos or 0)
        request_ended(mm_request, target, latency_ms=(result or {}).get("latency_ms"),
                      finished_at=now, cost_nanos=cost_nanos)
    return True


def request_ended(
    mm_request: MultimodalRequest, state: str, *, latency_ms: int | None,
    finished_at: datetime, cost_nanos: int | None = None,
) -> None:
    """Runs once whenever a request reaches completed, failed or cancelled, inside the
    transaction that ends it. Only a request's own ending is an outcome (DESIGN §8.1): a
    completed or failed one (timed out included) is recorded as outcome events (domain
    `multimodal.<modality>`, event type the provider), committed with the ending:
    `success_rate` 1 for completed, 0 for failed, the provider's `latency_ms` when it
    answered, and `cost_usd` for a completed request whose cost is known. So a provider
    that starts failing shows as a declining trend, which opens an improvement intake. A
    cancellation, by anyone on any path, records nothing: a person's decision says nothing
    about the provider. Everything it needs comes from the ending itself, so it reads
    nothing back."""
    from outcomes.services import event_record_bulk  # the apps' public seam

    logger.info("multimodal request %s ended: %s", mm_request.pk, state)
    if state == RequestState.CANCELLED:
        return
    common = {
        "domain": f"multimodal.{mm_request.modality}",
        "event_type": mm_request.provider,
        "occurred_at": finished_at,
        "metadata": {"request_id": mm_request.pk, "state": state},
    }
    events = [
        {**common, "metric_type": "success_rate",
         "value": 1.0 if state == RequestState.COMPLETED else 0.0},
    ]
    if latency_ms is not None:
        events.append({**common, "metric_type": "latency_ms", "value": float(latency_ms)})
    if state == RequestState.COMPLETED and cost_nanos is not None:
        cost = from_nanos(cost_nanos)
        events.append({**common, "metric_type": "cost_usd", "value": float(cost),
                       "metadata": {**common["metadata"], "cost_usd": format_usd(cost)}})
        transaction.on_commit(partial(record_spend, mm_request.modality, mm_request.provider,
                                      cost))
    try:
        # Only the tenant's key is used by the outcomes service: no need to load the row.
        event_record_bulk(tenant=Tenant(pk=mm_request.tenant_id), events=events)
    except ValidationError:  # raised before any write: the request still ends, unrecorded
        logger.exception("Could not record outcome events for %s", mm_request.pk)
