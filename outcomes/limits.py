"""How many outcome events one tenant may send per minute through the API.

A bulk of 10,000 events is one request to the per-token request throttle, yet it keeps a
worker and the database busy for about a second, and decline detection after it for about as
long again. A tenant sending such bulks in a loop would take the machine from every other
tenant (bench/noisy_neighbour.py). So events sent through the API (single, bulk, CTRF) count
against a per-tenant allowance per minute, `AGENT33_EVENTS_PER_MINUTE` (default 60,000,
i.e. a sustained 1,000 events a second; 0 turns it off). Events the service records itself
(a multimodal request's ending) do not count: the tenant did not send them.

Only events that are stored count. A request is charged once its events are valid, just
before they are written, if they fit in what is left of the minute; a request whose events
do not fit is refused (429 `event_rate_exceeded`, `Retry-After` the seconds to the next
minute) and charges nothing, and a charge whose write then fails is given back. The count is
one per tenant and minute shared by every process (agent33/auth/counters.py: Redis, or the
database), and a charge that does not fit changes nothing, so senders whose events together
fit are never refused. Once a tenant has used the whole minute, its next requests are
refused before their bodies are parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core import checks

from agent33.auth import counters
from agent33.errors import LimitReached
from agent33.tenancy.models import Tenant

__all__ = ["check_events_per_minute", "events_allowance_check", "events_charged"]

logger = logging.getLogger("agent33.outcomes")

_WINDOW_SECONDS = 60


def _limit() -> int:
    return int(getattr(settings, "AGENT33_EVENTS_PER_MINUTE", 60_000))


def _window(tenant: Tenant, limit: int) -> counters.Window:
    return counters.window(f"events:{tenant.pk}", limit=limit, seconds=_WINDOW_SECONDS)


def _refused(window: counters.Window, events: int | None = None) -> LimitReached:
    what = (f"This tenant has used its {window.limit:,} outcome events for this minute"
            if events is None else
            f"{events:,} more outcome events would pass this tenant's {window.limit:,} "
            "for this minute")
    return LimitReached(
        f"{what} (AGENT33_EVENTS_PER_MINUTE); retry in {window.retry_after} s.",
        retry_after=window.retry_after,
        code="event_rate_exceeded",
    )


def events_allowance_check(*, tenant: Tenant) -> None:
    """Refuse at once (before the body is parsed) when the tenant has used this minute's
    whole allowance."""
    limit = _limit()
    if limit <= 0:
        return
    window = _window(tenant, limit)
    if counters.used(window) >= limit:
        raise _refused(window)


@contextmanager
def events_charged(*, tenant: Tenant, events: int) -> Iterator[None]:
    """Charge `events` (already valid) against this minute's allowance for the block that
    stores them, or raise LimitReached charging nothing. If the block raises (the events
    were not stored), the charge is given back. Enter it outside the storing transaction."""
    limit = _limit()
    if limit <= 0 or events <= 0:
        yield
        return
    window = _window(tenant, limit)
    if not counters.take(window, events):
        raise _refused(window, events)
    try:
        yield
    except BaseException:
        try:
            counters.give_back(window, events)
        except Exception:  # the store's own failure is the one to report
            logger.exception("Could not give back %s events to %s's allowance", events,
                             tenant.pk)
        raise


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
