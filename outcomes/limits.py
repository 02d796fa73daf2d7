"""How many outcome events one tenant may send per minute through the API.

A bulk of 10,000 events is one request to the per-token request throttle, yet it keeps a
worker and the database busy for about a second, and decline detection after it for about as
long again. A tenant sending such bulks in a loop would take the machine from every other
tenant (bench/noisy_neighbour.py). So events sent through the API (single, bulk, CTRF) count
against a per-tenant allowance per minute, `AGENT33_EVENTS_PER_MINUTE` (default 60,000,
i.e. a sustained 1,000 events a second; 0 turns it off). Events the service records itself
(a multimodal request's ending) do not count: the tenant did not send them.

The allowance is a counter per tenant and minute in the default cache, so with Redis
(`REDIS_URL`) every worker and host shares it; embedded, each worker process counts alone.
A request over the allowance is refused with 429 `event_rate_exceeded` and `Retry-After` (the
seconds to the next minute) and counts nothing; once a tenant is over, its next requests are
refused before their bodies are parsed.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core import checks
from django.core.cache import cache

from agent33.errors import LimitReached
from agent33.tenancy.models import Tenant

__all__ = ["check_events_per_minute", "events_allowance_check", "events_allowance_take"]

_WINDOW_SECONDS = 60


def _limit() -> int:
    return int(getattr(settings, "AGENT33_EVENTS_PER_MINUTE", 60_000))


def _window(tenant: Tenant) -> tuple[str, int]:
    now = time.time()
    minute = int(now // _WINDOW_SECONDS)
    retry_after = max(1, int((minute + 1) * _WINDOW_SECONDS - now + 0.999))
    return f"outcomes:events-per-minute:{tenant.pk}:{minute}", retry_after


def _refused(limit: int, retry_after: int) -> LimitReached:
    return LimitReached(
        f"This tenant has sent its {limit:,} outcome events for this minute "
        f"(AGENT33_EVENTS_PER_MINUTE); retry in {retry_after} s.",
        retry_after=retry_after,
        code="event_rate_exceeded",
    )


def events_allowance_check(*, tenant: Tenant) -> None:
    """Refuse at once (before the body is parsed) when the tenant is already over this
    minute's allowance."""
    limit = _limit()
    if limit <= 0:
        return
    key, retry_after = _window(tenant)
    if (cache.get(key) or 0) >= limit:
        raise _refused(limit, retry_after)


def events_allowance_take(*, tenant: Tenant, events: int) -> None:
    """Count `events` against this minute's allowance, or refuse them (counting nothing)."""
    limit = _limit()
    if limit <= 0 or events <= 0:
        return
    key, retry_after = _window(tenant)
    cache.add(key, 0, timeout=2 * _WINDOW_SECONDS)
    try:
        total = cache.incr(key, events)
    except ValueError:  # the key expired between add and incr: start the window again
        cache.add(key, events, timeout=2 * _WINDOW_SECONDS)
        total = events
    if total > limit:
        cache.decr(key, events)  # a refused request takes nothing from the allowance
        raise _refused(limit, retry_after)


@checks.register()
def check_events_per_minute(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """An allowance below the largest bulk would refuse every full bulk: a start-up error."""
    from .validation import MAX_BULK_EVENTS

    limit = _limit()
    if 0 < limit < MAX_BULK_EVENTS:
        return [checks.Error(
            f"AGENT33_EVENTS_PER_MINUTE is {limit:,}, below the largest bulk "
            f"({MAX_BULK_EVENTS:,} events), which could then never be recorded.",
            hint=f"Set it to 0 (no limit) or at least {MAX_BULK_EVENTS}.",
            id="outcomes.E001",
        )]
    return []
