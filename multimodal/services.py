"""Every write in the multimodal app: policy, artifacts, requests and their execution.

The API, the admin, commands and tasks all call these functions. Request states move only by
conditional UPDATEs (`filter(pk=..., state__in=sources).update(...)`), so the check and the
write are one database step and concurrent callers (a cancel racing a worker's finish, two
deliveries of one task) cannot both win. Every way a request ends (completed, failed,
cancelled) goes through `_end_request()`, which calls `request_ended()` once, in its commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.sql import insert_instance, insert_statement, select_instance, update_statement
from agent33.tenancy.models import Tenant

from .choices import (
    CONTENT_TYPES_FOR_INPUT,
    ArtifactOrigin,
    Modality,
    RequestState,
    sources_for,
)
from .models import (
    POLICY_DEFAULTS,
    Artifact,
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
)
from .providers.base import ProviderError, ProviderOutput
from .providers.registry import get_provider
from .resolution import provider_call_for, resolve_provider
from .selectors import request_reloaded
from .sniffing import SNIFF_BYTES, describe_accepted, sniff_content_type

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "POLICY_FIELDS",
    "artifact_create",
    "artifact_read",
    "policy_for",
    "policy_set",
    "reap_timeouts",
    "request_cancel",
    "request_create",
    "request_ended",
    "request_execute",
    "request_fail_unqueued",
    "request_run",
    "timeout_message",
]

logger = logging.getLogger("agent33.multimodal")

DEFAULT_TIMEOUT_SECONDS = 60
POLICY_FIELDS = ("max_text_chars", "max_artifact_bytes", "max_timeout_seconds",
                 "allowed_modalities")
MAX_CANCEL_REASON = 500


def _reaper_grace_seconds() -> float:
    return float(getattr(settings, "MULTIMODAL_REAPER_GRACE_SECONDS", 30))


# --- policy ----------------------------------------------------------------------------


def policy_for(tenant: Tenant) -> MultimodalPolicy:
    """The tenant's policy, or an unsaved one holding the defaults if none was set.
    Hand-written (agent33.sql): every request reads it first."""
    policy = select_instance(
        MultimodalPolicy, connection, f"{connection.ops.quote_name('tenant_id')} = %s",
        [tenant.pk],
    )
    return policy if policy is not None else MultimodalPolicy(tenant=tenant)


def policy_set(*, tenant: Tenant, actor: str, values: dict[str, Any]) -> MultimodalPolicy:
    """Set some or all policy values; the others keep their current (or default) value."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown policy fields: {', '.join(sorted(unknown))}.",
                           field=sorted(unknown)[0])
    with transaction.atomic():
        try:
            with transaction.atomic():
                MultimodalPolicy.all_tenants.get_or_create(tenant=tenant)
        except IntegrityError:
            pass  # created concurrently by another caller; the row exists now either way
        # Lock the row: two admins setting different fields must not overwrite each other.
        policy = MultimodalPolicy.all_tenants.select_for_update().get(tenant=tenant)
        for name, value in values.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.updated_by = actor
        policy.full_clean(exclude=["tenant"], validate_constraints=False)
        policy.save()
    return policy


# --- artifacts -------------------------------------------------------------------------


def _size_of(content: bytes | File) -> int:
    return len(content) if isinstance(content, bytes | bytearray) else int(content.size or 0)


def _head_and_digest(content: bytes | File) -> tuple[bytes, str]:
    if isinstance(content, bytes | bytearray):
        return bytes(content[:SNIFF_BYTES]), hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256()
    head = b""
    content.seek(0)
    for chunk in content.chunks():
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
    content.seek(0)
    return head, digest.hexdigest()


def check_artifact_size(size: int, policy: MultimodalPolicy, *, field: str) -> None:
    if size > policy.max_artifact_bytes:
        raise InvalidInput(
            f"{field} is {size} bytes, over the tenant policy's max_artifact_bytes "
            f"({policy.max_artifact_bytes}).",
            code="max_artifact_bytes",
            field=field,
        )


def artifact_create(
    *,
    tenant: Tenant,
    actor: str,
    content: bytes | File,
    origin: str = ArtifactOrigin.UPLOAD,
    policy: MultimodalPolicy | None = None,
    field: str = "file",
) -> Artifact:
    """Store an input file (an upload or inline base64) for `tenant`: held to the policy's
    max_artifact_bytes, and it must be one of the accepted formats."""
    check_artifact_size(_size_of(content), policy or policy_for(tenant), field=field)
    return _artifact_store(tenant_id=tenant.pk, actor=actor, content=content, origin=origin,
                           field=field)


def _artifact_store(*, tenant_id: str, actor: str, content: bytes | File, origin: str,
                    field: str) -> Artifact:
    """Sniff, hash and store a file (provider outputs come here directly: they are checked
    for format, not against the tenant's input limit)."""
    size = _size_of(content)
    if size == 0:
        raise InvalidInput(f"{field} is empty.", code="empty_file", field=field)
    head, sha256 = _head_and_digest(content)
    content_type = sniff_content_type(head)
    if content_type is None:
        raise InvalidInput(
            f"{field} is not a supported file type; send {describe_accepted()}.",
            code="unsupported_content_type",
            field=field,
        )
    artifact = Artifact(
        tenant_id=tenant_id,
        content_type=content_type,
        size_bytes=size,
        sha256=sha256,
        origin=origin,
        created_by=actor,
    )
    body = ContentFile(bytes(content)) if isinstance(content, bytes | bytearray) else content
    # The storage API (not the filesystem) so an S3-compatible backend is only a setting.
    artifact.file.save(f"{artifact.pk}.{artifact.extension}", body, save=False)
    try:
        insert_instance(artifact, connection)  # hand-written: on every request's path
    except Exception:
        artifact.file.delete(save=False)
        raise
    return artifact


def artifact_read(artifact: Artifact) -> bytes:
    with artifact.file.open("rb") as handle:
        return handle.read()


# --- requests: creation ----------------------------------------------------------------


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
) -> MultimodalRequest:
    """Check the request against the tenant's policy, then its content, then store it (and
    its inline input); with `execute_now` also claim it for execution in the same commit."""
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
        artifact = Artifact.all_tenants.filter(tenant=tenant, pk=input_artifact_id).first()
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

    # One INSERT needs no transaction of its own (two fewer round trips on the hot path);
    # an inline input artifact and the request row must commit together.
    with transaction.atomic() if inline is not None else nullcontext():
        if inline is not None:
            artifact = artifact_create(tenant=tenant, actor=actor, content=inline,
                                       origin=ArtifactOrigin.INLINE, policy=policy,
                                       field="input_artifact_base64")
        # With execute_now the row is born claimed (pending → processing within this one
        # transaction), so no other caller can ever see it pending.
        claim = _claim_fields(requested_timeout_seconds) if execute_now else {}
        request = MultimodalRequest(
            tenant=tenant,
            modality=modality,
            provider=provider_name,
            input_text=input_text,
            input_artifact=artifact,
            requested_timeout_seconds=requested_timeout_seconds,
            requested_by=requested_by,
            created_by=actor,
            **claim,
        )
        insert_instance(request, connection)  # hand-written: on every request's path
        if execute_now:
            _enqueue_on_commit(request, claim["claim_token"])
    # Eager mode: the task ran on commit, so this read sees the finished request.
    return request_reloaded(request)


# --- requests: execution ---------------------------------------------------------------


def _state_of(request: MultimodalRequest) -> str:
    state = (
        MultimodalRequest.all_tenants.filter(pk=request.pk, tenant_id=request.tenant_id)
        .values_list("state", flat=True)
        .first()
    )
    if state is None:
        raise NotFound(f"Request {request.pk} does not exist.")
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


def _enqueue_on_commit(request: MultimodalRequest, claim_token: str) -> None:
    from . import tasks  # the task module imports this one

    transaction.on_commit(
        partial(tasks.enqueue_execution, request.pk, claim_token,
                request.requested_timeout_seconds)
    )


def _claim_for_execution(request: MultimodalRequest) -> None:
    """pending|failed → processing in one UPDATE; the task is queued when that commits."""
    claim = _claim_fields(request.requested_timeout_seconds)
    claimed = MultimodalRequest.all_tenants.filter(
        pk=request.pk,
        tenant_id=request.tenant_id,
        state__in=sources_for(RequestState.PROCESSING),
    ).update(**claim)
    if not claimed:
        state = _state_of(request)
        raise StateConflict(
            f"Request {request.pk} is {state}; only pending or failed requests can be "
            "executed.",
        )
    # Executing a failed request again: its old (failed) result gives way to the new run.
    MultimodalResult.all_tenants.filter(tenant_id=request.tenant_id, request_id=request.pk).delete()
    _enqueue_on_commit(request, claim["claim_token"])


def request_execute(*, request: MultimodalRequest, actor: str) -> MultimodalRequest:
    """Claim a pending (or failed) request and queue it. 409 when processing, completed or
    cancelled. Eager mode: returns the finished request."""
    with transaction.atomic():
        _claim_for_execution(request)
    logger.info("multimodal request %s executed by %s", request.pk, actor)
    return request_reloaded(request)


def request_cancel(
    *, request: MultimodalRequest, actor: str, reason: str = ""
) -> MultimodalRequest:
    """Cancel a pending or processing request; a running provider's late output is then
    discarded by the task. Cancelling a cancelled request changes nothing; completed or
    failed → 409. The API and the operations hub both call this."""
    if len(reason) > MAX_CANCEL_REASON:
        raise InvalidInput(f"reason is longer than {MAX_CANCEL_REASON} characters.",
                           field="reason")
    ended = _end_request(
        request,
        RequestState.CANCELLED,
        extra={"cancelled_by": actor, "cancel_reason": reason},
    )
    if not ended:
        state = _state_of(request)
        if state != RequestState.CANCELLED:
            raise StateConflict(
                f"Request {request.pk} is {state}; only pending or processing requests can be "
                "cancelled.",
            )
    return request_reloaded(request)


def _end_request(
    request: MultimodalRequest,
    target: str,
    *,
    error_message: str = "",
    result: dict[str, Any] | None = None,
    claim_token: str | None = None,
    extra: dict[str, Any] | None = None,
    deadline_before: datetime | None = None,
) -> bool:
    """THE place where a request ends (completed, failed or cancelled): one conditional
    UPDATE from the states allowed to reach `target` (and, when given, only under
    `claim_token` / with a deadline before `deadline_before`), the result row and
    `request_ended()`'s outcome events in the same transaction. Returns False, changing
    nothing, when the request had already moved on. Hand-written statements (agent33.sql):
    every request ends here, on its latency path."""
    now = timezone.now()
    quote = connection.ops.quote_name
    sources = sorted(sources_for(target))
    conditions = [
        f"{quote('id')} = %s",
        f"{quote('tenant_id')} = %s",
        f"{quote('state')} IN ({', '.join(['%s'] * len(sources))})",
    ]
    params: list[Any] = [request.pk, request.tenant_id, *sources]
    if claim_token is not None:
        conditions.append(f"{quote('claim_token')} = %s")
        params.append(claim_token)
    if deadline_before is not None:
        conditions.append(f"{quote('deadline_at')} < %s")
        params.append(connection.ops.adapt_datetimefield_value(deadline_before))
    values = {"state": target, "error_message": error_message, "finished_at": now,
              "updated_at": now, **(extra or {})}
    # No savepoint when nested: a caller that wraps this (request_run, to store the output
    # artifact in the same commit) rolls back as a whole.
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute(*update_statement(
                MultimodalRequest, values, connection, " AND ".join(conditions), params
            ))
            if cursor.rowcount == 0:
                return False
            if result is not None:
                stored = MultimodalResult(
                    tenant_id=request.tenant_id, request_id=request.pk, state=target, **result
                )
                cursor.execute(*insert_statement(stored, connection))
        request_ended(request, target, latency_ms=(result or {}).get("latency_ms"),
                      finished_at=now)
    return True


def request_ended(
    request: MultimodalRequest, state: str, *, latency_ms: int | None, finished_at: datetime
) -> None:
    """Runs once whenever a request reaches completed, failed or cancelled, inside the
    transaction that ends it, and records the ending as outcome events (domain
    `multimodal.<modality>`, event type the provider), so the two commit together:
    `success_rate` 1 for completed, 0 for failed or cancelled, and the provider's
    `latency_ms` when it answered. So a provider that starts failing shows as a declining
    trend, which opens an improvement intake. Everything it needs comes from the ending
    itself, so it reads nothing back."""
    from outcomes.services import event_record_bulk  # the apps' public seam

    logger.info("multimodal request %s ended: %s", request.pk, state)
    common = {
        "domain": f"multimodal.{request.modality}",
        "event_type": request.provider,
        "occurred_at": finished_at,
        "metadata": {"request_id": request.pk, "state": state},
    }
    events = [
        {**common, "metric_type": "success_rate",
         "value": 1.0 if state == RequestState.COMPLETED else 0.0},
    ]
    if latency_ms is not None:
        events.append({**common, "metric_type": "latency_ms", "value": float(latency_ms)})
    try:
        # Only the tenant's key is used by the outcomes service: no need to load the row.
        event_record_bulk(tenant=Tenant(pk=request.tenant_id), events=events)
    except ValidationError:  # raised before any write: the request still ends, unrecorded
        logger.exception("Could not record outcome events for %s", request.pk)


def timeout_message(request: MultimodalRequest) -> str:
    return f"timed out after {request.requested_timeout_seconds} s"


def _result_fields(
    request: MultimodalRequest,
    *,
    started: datetime | None,
    latency_ms: int | None,
    output: ProviderOutput | None = None,
    artifact: Artifact | None = None,
    error: str = "",
    provider_attempts: int = 1,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "provider": request.provider,
        "model": output.model if output else "",
        "attempts": output.attempts if output else provider_attempts,
        "execution_attempts": request.attempts,
        "latency_ms": latency_ms,
    }
    if request.claimed_at and started:
        metadata["queue_ms"] = max(0, round((started - request.claimed_at).total_seconds() * 1000))
    if output and output.usage:
        metadata["usage"] = output.usage
    if error:
        metadata["error"] = error
    return {
        "output_text": output.output_text if output else "",
        "output_artifact": artifact,
        "output_data": output.output_data if output else {},
        "metadata": metadata,
        "provider": request.provider,
        "latency_ms": latency_ms,
        "started_at": started,
    }


def request_run(request_id: str, claim_token: str) -> str:
    """One execution attempt (the Celery task's body). Returns what happened, for logs.

    Idempotent under redelivery: the attempt starts only if the request is still
    processing under this claim, and ends only through `_end_request`'s conditional UPDATE,
    so however many deliveries run, one result row is written and a request cancelled or
    reaped meanwhile keeps that state (the late output is deleted).
    """
    now = timezone.now()
    request = _start_attempt(request_id, claim_token, now)
    if request is None:
        return "skipped"

    def fail(message: str, *, latency_ms: int | None = None,
             output: ProviderOutput | None = None, provider_attempts: int = 1) -> str:
        ended = _end_request(
            request, RequestState.FAILED, error_message=message, claim_token=claim_token,
            result=_result_fields(request, started=now, latency_ms=latency_ms, output=output,
                                  error=message, provider_attempts=provider_attempts),
        )
        return "failed" if ended else "discarded"

    remaining = (request.deadline_at - now).total_seconds() if request.deadline_at else 0
    if remaining <= 0:
        return fail(timeout_message(request))

    data: bytes | None = None
    content_type = ""
    if request.input_artifact is not None:
        try:
            data = artifact_read(request.input_artifact)
        except OSError as exc:
            return fail(f"input artifact {request.input_artifact.pk} could not be read: {exc}")
        content_type = request.input_artifact.content_type

    clock = time.monotonic()
    try:
        provider = get_provider(request.provider)
        output = provider.run(
            request.modality,
            text=request.input_text,
            data=data,
            content_type=content_type,
            call=provider_call_for(request, remaining,
                                   policy_cap_seconds=request.policy_max_timeout_seconds),
        )
    except ProviderError as exc:
        return fail(str(exc), latency_ms=_elapsed_ms(clock), provider_attempts=exc.attempts)
    except Exception as exc:  # an engine bug must fail the request, not leave it processing
        logger.exception("provider %s crashed on request %s", request.provider, request_id)
        return fail(f"{request.provider}: unexpected error: {type(exc).__name__}: {exc}",
                    latency_ms=_elapsed_ms(clock))
    latency_ms = _elapsed_ms(clock)

    if timezone.now() > request.deadline_at:
        # Output after the deadline is discarded: the caller was promised an answer in time.
        return fail(timeout_message(request), latency_ms=latency_ms, output=output)

    artifact: Artifact | None = None
    try:
        # The output artifact and the completion commit together: a request that was
        # cancelled or reaped meanwhile leaves neither a result nor an orphaned artifact row.
        with transaction.atomic():
            if output.output_bytes is not None:
                artifact = _artifact_store(
                    tenant_id=request.tenant_id, actor=f"provider:{request.provider}",
                    content=output.output_bytes, origin=ArtifactOrigin.OUTPUT, field="output",
                )
            if not _end_request(
                request,
                RequestState.COMPLETED,
                claim_token=claim_token,
                result=_result_fields(request, started=now, latency_ms=latency_ms,
                                      output=output, artifact=artifact),
            ):
                raise _LateResult
    except _LateResult:
        if artifact is not None:
            artifact.file.delete(save=False)
        return "discarded"
    except InvalidInput:
        return fail(f"{request.provider}: returned output that is not a supported audio or "
                    "image format", latency_ms=latency_ms)
    return "completed"


class _LateResult(Exception):
    """The request left `processing` (cancelled, reaped) while the provider worked."""


def _start_attempt(request_id: str, claim_token: str, now: datetime) -> MultimodalRequest | None:
    """Count an attempt if the request is still processing under this claim, and return the
    row: one conditional `UPDATE … RETURNING` (PostgreSQL and SQLite alike), so a delivery
    for a request that finished, was cancelled or reaped, or was claimed again does nothing,
    in one round trip instead of an UPDATE and a SELECT. The row comes back with
    `policy_max_timeout_seconds`, the tenant's policy cap as it is now (the default when
    never set), which binds the engine call (see `provider_call_for`): no second query."""
    meta = MultimodalRequest._meta
    policy = MultimodalPolicy._meta
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    stamp = connection.ops.adapt_datetimefield_value(now)
    # Identifiers come from the models' own metadata; every value is a query parameter.
    table, attempts = quote(meta.db_table), column("attempts")
    tenant = column("tenant")
    policy_cap = (
        f"COALESCE((SELECT {quote(policy.get_field('max_timeout_seconds').column)} "  # noqa: S608
        f"FROM {quote(policy.db_table)} "
        f"WHERE {quote(policy.get_field('tenant').column)} = {table}.{tenant}), %s)"
    )
    sql = (
        f"UPDATE {table} SET {attempts} = {attempts} + 1, "  # noqa: S608
        f"{column('started_at')} = %s, {column('updated_at')} = %s "
        f"WHERE {column('id')} = %s AND {column('state')} = %s "
        f"AND {column('claim_token')} = %s "
        f"RETURNING *, {policy_cap} AS policy_max_timeout_seconds"
    )
    params = [stamp, stamp, request_id, RequestState.PROCESSING.value, claim_token,
              POLICY_DEFAULTS["max_timeout_seconds"]]
    rows = list(MultimodalRequest.all_tenants.raw(sql, params))
    return rows[0] if rows else None


def _elapsed_ms(clock: float) -> int:
    return round((time.monotonic() - clock) * 1000)


def request_fail_unqueued(request_id: str, claim_token: str, reason: str) -> None:
    """The broker refused the task: fail the request now rather than wait for the reaper."""
    request = MultimodalRequest.all_tenants.filter(pk=request_id).first()
    if request is not None:
        message = f"could not queue the request for execution: {reason}"
        _end_request(request, RequestState.FAILED, error_message=message,
                     claim_token=claim_token,
                     result=_result_fields(request, started=None, latency_ms=None,
                                           error=message))


def reap_timeouts(*, now: datetime | None = None, grace_seconds: float | None = None,
                  batch_size: int = 500) -> list[str]:
    """Fail requests still processing past their deadline plus a grace period ("timed out
    after N s"). Returns the ids it failed. A worker finishing one of them later finds it
    failed and discards its output."""
    now = now or timezone.now()
    grace = _reaper_grace_seconds() if grace_seconds is None else grace_seconds
    cutoff = now - timedelta(seconds=grace)
    reaped: list[str] = []
    candidates: Iterable[MultimodalRequest] = MultimodalRequest.all_tenants.filter(
        state=RequestState.PROCESSING, deadline_at__lt=cutoff
    ).order_by("deadline_at")[:batch_size]
    for request in candidates:
        message = timeout_message(request)
        if _end_request(
            request,
            RequestState.FAILED,
            error_message=message,
            deadline_before=cutoff,
            result=_result_fields(request, started=request.started_at, latency_ms=None,
                                  error=message),
        ):
            reaped.append(request.pk)
    if reaped:
        logger.warning("reaped %d timed-out multimodal requests", len(reaped))
    return reaped
