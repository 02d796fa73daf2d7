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
from the audio header's duration, vision from the image size and max_tokens) priced with the
same price row as the actual cost. With a limit set, a request whose cost cannot be
estimated (no price, or a priced unit the engine cannot estimate) is refused with 400
`cost_not_estimable` rather than let through uncounted.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db.models import F
from django.utils import timezone

from agent33.errors import InvalidInput, LimitReached
from agent33.tenancy.models import Tenant

from ..models import Artifact, DailySpend, MultimodalPolicy
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
from .prices import price_for

__all__ = [
    "SpendPlan",
    "input_facts",
    "limit_nanos",
    "spend_on",
    "spend_plan",
    "spend_reserve",
    "spend_settle",
]

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


def spend_plan(*, tenant: Tenant, policy: MultimodalPolicy, provider: str, modality: str,
               model: str, options: dict[str, Any],
               facts_reader: Callable[[], InputFacts]) -> SpendPlan:
    """The day a claim made now counts on and, when the policy has a limit, its estimated
    cost (from `facts_reader()`, called only then). 400 `cost_not_estimable` when a limit is
    set and the estimate is unknown."""
    day = utc_day(timezone.now())
    limit = limit_nanos(policy)
    if limit is None:
        return SpendPlan(day=day)
    engine = get_provider(provider)
    model = model or engine.default_models.get(modality, "")
    usage = engine.estimate_usage(modality, facts_reader(), options, model)
    price = price_for(provider, model)
    cost = cost_of(usage, price.usd_per_unit if price else None, what=f"{provider}/{model}")
    if cost.usd is None:
        raise InvalidInput(
            f"Tenant {tenant.pk} has a daily spend limit, and this request's cost cannot be "
            f"estimated ({cost.note}), so it could not be counted against the limit. An "
            f"operator sets the price with PUT /v1/multimodal/prices/{provider}/{model}.",
            code="cost_not_estimable", field="provider")
    return SpendPlan(day=day, limit_nanos=limit, estimate_nanos=to_nanos_ceiling(cost.usd),
                     estimated_usage=usage)


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
            return
        _ensure_day_row(tenant_id, day)  # first spend of a day without a limit


def spend_on(tenant_id: str, day: date) -> DailySpend:
    """The tenant's spend row of `day` (an unsaved zero row when nothing was spent)."""
    found = DailySpend.objects.filter(tenant_id=tenant_id, day=day).first()
    return found or DailySpend(tenant_id=tenant_id, day=day)
