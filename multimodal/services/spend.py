"""Daily spend: estimates, reservations against a tenant's limit, and settlement.

A tenant's spend on one UTC day is one `DailySpend` row: `settled` (what ended requests cost)
and `reserved` (the estimates of requests still running), in nano-dollars (see
multimodal.pricing for why integers).

- Every claim (create with execute_now, execute) counts on the UTC day it is made
  (`spend_day` on the request). With a `daily_spend_limit_usd` in the policy, the claim first
  reserves its estimated cost with ONE conditional UPDATE,
  `reserved += estimate WHERE reserved + settled <= limit - estimate`: the check and the
  write are one database step, so concurrent requests can never together pass the limit
  (PostgreSQL re-checks the condition on the locked row; SQLite runs writers one at a time).
  No row updated → 429 `spend_limit_reached`, and the caller's transaction (which also holds
  the new request row) rolls back, so nothing is stored.
- When the claim ends (`request_end`: completed, failed, cancelled, reaped), in the same
  transaction: `reserved -= what this claim reserved; settled += its actual cost`.
- Settled spend is recorded whether or not a limit is set, so a limit set at noon counts the
  morning too.

Estimates come from each engine (`Provider.estimate_usage`: TTS from the text's length, STT
from the audio header's duration, vision from the image size and max_tokens; offline engines
from their throughput measured on this platform, `EngineThroughput`) priced with the same
price row as the actual cost. With a limit set, a request whose cost cannot be estimated (no
price, or a priced unit the engine cannot estimate) is refused with 400
`cost_not_estimable` rather than let through uncounted.

A limit is never passed by concurrent requests, because no request can cost more than it
reserved:
- an offline engine reserves OFFLINE_RESERVE_FACTOR times its estimate, and is stopped when
  it has used the compute time that reservation pays for (the request fails saying so);
- a cloud attempt that the provider may have billed without answering (a 5xx, a timeout)
  is repeated only after one more estimate is reserved (`spend_reserve_retry`); each such
  attempt is charged its estimate, the answered one its reported usage.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agent33.errors import InvalidInput, LimitReached
from agent33.tenancy.models import Tenant

from ..models import Artifact, DailySpend, EngineThroughput, MultimodalPolicy, MultimodalRequest
from ..pricing import (
    cost_of,
    format_usd,
    from_nanos,
    seconds_to_next_utc_midnight,
    to_nanos_ceiling,
    utc_day,
)
from ..providers.audio import header_seconds
from ..providers.base import MODALITY_SPEECH_TO_TEXT, MODALITY_VISION, InputFacts
from ..providers.registry import get_provider
from ..signals import spend_settled
from .prices import price_for

__all__ = [
    "OFFLINE_RESERVE_FACTOR",
    "Estimate",
    "SpendPlan",
    "cost_estimate",
    "input_facts",
    "limit_nanos",
    "spend_on",
    "spend_plan",
    "spend_reserve",
    "spend_reserve_retry",
    "spend_settle",
    "throughput_record",
]

logger = logging.getLogger("agent33.multimodal")

# An offline engine reserves this many times its estimate and may use no more: room for a
# busy machine (two OCR jobs at once ran 1.35x slower than one alone) without letting a
# request cost more than it reserved.
OFFLINE_RESERVE_FACTOR = 3
# Measured throughput replaces an engine's prior once this many requests were measured.
MIN_THROUGHPUT_SAMPLES = 3

@dataclass(frozen=True)
class SpendPlan:
    """What a claim will count: its day, and with a limit, its estimate to reserve."""

    day: date
    limit_nanos: int | None = None
    estimate_nanos: int = 0
    estimated_usage: dict[str, Any] = field(default_factory=dict)

    def claim_fields(self) -> dict[str, Any]:
        return {"spend_day": self.day, "reserved_nano_usd": self.estimate_nanos,
                "estimated_usage": self.estimated_usage}


def limit_nanos(policy: MultimodalPolicy) -> int | None:
    limit = policy.daily_spend_limit_usd
    return None if limit is None else to_nanos_ceiling(limit)


def _image_size(head: Any) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(head) as image:  # reads the header only
            return image.size
    except Exception:
        return None


def input_facts(modality: str, *, text: str, data: bytes | None = None,
                artifact: Artifact | None = None) -> InputFacts:
    """Text length, audio duration (from the header) and image size, read from the bytes at
    hand or from the stored artifact's header."""
    if modality not in (MODALITY_SPEECH_TO_TEXT, MODALITY_VISION) \
            or (data is None and artifact is None):
        return InputFacts(text_chars=len(text))

    def read(reader):
        if data is not None:
            return reader(io.BytesIO(data))
        try:
            with artifact.file.open("rb") as handle:
                return reader(handle)
        except OSError:
            return None

    if modality == MODALITY_SPEECH_TO_TEXT:
        return InputFacts(text_chars=len(text), audio_seconds=read(header_seconds))
    size = read(_image_size)
    width, height = size if size else (None, None)
    return InputFacts(text_chars=len(text), image_width=width, image_height=height)


@dataclass(frozen=True)
class Estimate:
    """What a request is expected to use and cost (nanos None: unknown, `note` says why)."""

    usage: dict[str, Any]
    nanos: int | None
    note: str = ""


def _measured_rate(provider: str, modality: str) -> float | None:
    row = EngineThroughput.objects.filter(provider=provider, modality=modality).values_list(
        "seconds_per_unit", "samples").first()
    return row[0] if row is not None and row[1] >= MIN_THROUGHPUT_SAMPLES else None


def cost_estimate(*, provider: str, modality: str, model: str, options: dict[str, Any],
                  facts: InputFacts) -> Estimate:
    """The engine's usage estimate (offline engines at their measured throughput), priced
    with the price row of `provider`/`model` (the engine's default model when empty)."""
    engine = get_provider(provider)
    model = model or engine.default_models.get(modality, "")
    rate = _measured_rate(provider, modality) if engine.size_unit else None
    usage = engine.estimate_usage(modality, facts, options, model, seconds_per_unit=rate)
    price = price_for(provider, model)
    cost = cost_of(usage, price.usd_per_unit if price else None, what=f"{provider}/{model}")
    return Estimate(usage=usage, nanos=None if cost.usd is None else to_nanos_ceiling(cost.usd),
                    note=cost.note or "")


def spend_plan(*, tenant: Tenant, policy: MultimodalPolicy, provider: str, modality: str,
               model: str, options: dict[str, Any],
               facts_reader: Callable[[], InputFacts]) -> SpendPlan:
    """The day a claim made now counts on and, when the policy has a limit, what it reserves
    (from `facts_reader()`, called only then): its estimated cost, or for an offline engine
    OFFLINE_RESERVE_FACTOR times it (the engine is stopped at that). 400
    `cost_not_estimable` when a limit is set and the estimate is unknown."""
    day = utc_day(timezone.now())
    limit = limit_nanos(policy)
    if limit is None:
        return SpendPlan(day=day)
    estimate = cost_estimate(provider=provider, modality=modality, model=model,
                             options=options, facts=facts_reader())
    if estimate.nanos is None:
        model = model or get_provider(provider).default_models.get(modality, "")
        raise InvalidInput(
            f"Tenant {tenant.pk} has a daily spend limit, and this request's cost cannot be "
            f"estimated ({estimate.note}), so it could not be counted against the limit. An "
            f"operator sets the price with PUT /v1/multimodal/prices/{provider}/{model}.",
            code="cost_not_estimable", field="provider")
    factor = OFFLINE_RESERVE_FACTOR if get_provider(provider).size_unit else 1
    return SpendPlan(day=day, limit_nanos=limit, estimate_nanos=estimate.nanos * factor,
                     estimated_usage=estimate.usage)


def _ensure_day_row(tenant_id: str, day: date) -> None:
    # ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite): concurrent first requests of a
    # day all end up updating the one row.
    DailySpend.objects.bulk_create([DailySpend(tenant_id=tenant_id, day=day)],
                                   ignore_conflicts=True)


def _reserve(tenant_id: str, plan: SpendPlan) -> int:
    return (
        DailySpend.objects.filter(tenant_id=tenant_id, day=plan.day)
        .alias(committed=F("reserved_nano_usd") + F("settled_nano_usd"))
        .filter(committed__lte=plan.limit_nanos - plan.estimate_nanos)
        .update(reserved_nano_usd=F("reserved_nano_usd") + plan.estimate_nanos,
                updated_at=timezone.now())
    )


def spend_reserve(*, tenant_id: str, plan: SpendPlan) -> None:
    """Reserve the plan's estimate within the limit, or raise 429 `spend_limit_reached`.
    Call inside the transaction that stores the claim, so a refusal or a failure later in it
    leaves nothing reserved."""
    if plan.limit_nanos is None:
        return
    if _reserve(tenant_id, plan):
        return
    if not DailySpend.objects.filter(tenant_id=tenant_id, day=plan.day).exists():
        _ensure_day_row(tenant_id, plan.day)
        if _reserve(tenant_id, plan):
            return
    spent = spend_on(tenant_id, plan.day)
    retry_after = seconds_to_next_utc_midnight(timezone.now())
    raise LimitReached(
        f"Tenant {tenant_id}'s daily spend limit of ${format_usd(from_nanos(plan.limit_nanos))} "
        f"would be passed: ${format_usd(spent.settled_nano_usd)} spent and "
        f"${format_usd(spent.reserved_nano_usd)} reserved by running requests today (UTC), "
        f"and this request is estimated at ${format_usd(from_nanos(plan.estimate_nanos))}. "
        f"The limit resets at 00:00 UTC, in {retry_after} s.",
        code="spend_limit_reached", retry_after=retry_after)


def spend_reserve_retry(*, mm_request: MultimodalRequest, claim_token: str, nanos: int,
                        limit: int) -> bool:
    """Before repeating a cloud attempt the provider may have billed: reserve `nanos` more
    for the claim, within the limit, or refuse (False). Its own short transaction, in the
    lock order of every ending: the request's row, then the day's spend row."""
    with transaction.atomic():
        claimed = MultimodalRequest.objects.select_for_update(of=("self",), no_key=True).filter(
            pk=mm_request.pk, claim_token=claim_token, state="processing")
        if not list(claimed.values_list("pk", flat=True)):
            return False
        plan = SpendPlan(day=mm_request.spend_day, limit_nanos=limit, estimate_nanos=nanos)
        if not _reserve(mm_request.tenant_id, plan):
            return False
        claimed.update(reserved_nano_usd=F("reserved_nano_usd") + nanos)
    return True


def throughput_record(*, provider: str, modality: str, usage: dict[str, Any]) -> None:
    """Fold a completed offline request's compute time per unit of input into the engine's
    measured throughput (one short UPDATE after the request's own commit, so the shared row
    is never held while other locks are)."""
    engine = get_provider(provider)
    size, seconds = usage.get(engine.size_unit), usage.get("compute_seconds")
    if not engine.size_unit or not size or seconds is None or size <= 0:
        return
    sample = float(seconds) / float(size)
    now = timezone.now()
    rows = EngineThroughput.objects.filter(provider=provider, modality=modality)
    if not rows.update(seconds_per_unit=F("seconds_per_unit") * 0.8 + sample * 0.2,
                       samples=F("samples") + 1, updated_at=now):
        EngineThroughput.objects.bulk_create([EngineThroughput(
            provider=provider, modality=modality, unit=engine.size_unit,
            seconds_per_unit=sample, updated_at=now)], ignore_conflicts=True)


def spend_settle(*, tenant_id: str, day: date | None, release_nanos: int,
                 cost_nanos: int) -> None:
    """A claim ended: give back what it reserved and add what it cost, in one UPDATE (in the
    transaction that ends it)."""
    if day is None or (not release_nanos and not cost_nanos):
        return
    for _ in range(2):
        updated = DailySpend.objects.filter(tenant_id=tenant_id, day=day).update(
            reserved_nano_usd=F("reserved_nano_usd") - release_nanos,
            settled_nano_usd=F("settled_nano_usd") + cost_nanos,
            updated_at=timezone.now(),
        )
        if updated:
            if cost_nanos:
                transaction.on_commit(partial(_announce_settled, tenant_id, day), robust=True)
            return
        _ensure_day_row(tenant_id, day)  # first spend of a day without a limit


def _announce_settled(tenant_id: str, day: date) -> None:
    for _receiver, result in spend_settled.send_robust(sender=DailySpend, tenant_id=tenant_id,
                                                       day=day):
        if isinstance(result, Exception):
            logger.error("spend_settled listener failed for %s", tenant_id, exc_info=result)


def spend_on(tenant_id: str, day: date) -> DailySpend:
    """The tenant's spend row of `day` (an unsaved zero row when nothing was spent)."""
    found = DailySpend.objects.filter(tenant_id=tenant_id, day=day).first()
    return found or DailySpend(tenant_id=tenant_id, day=day)
