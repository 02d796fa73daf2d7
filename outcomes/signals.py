"""Signals other code listens to without outcomes importing it.

`decline_opened` is sent once the transaction that opened an improvement intake for a
declining trend has committed (never for one that rolled back, never when the decline's
intake was already open), with `decline`: a `DeclineOpened`. Alerts send it as the webhook
events `intake.opened` and, for a CTRF test or a `benchmarks.*` domain, `benchmark.regressed`.
Listeners must be quick and must not raise (an error is logged by the sender and never undoes
the intake that already committed).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.dispatch import Signal

__all__ = ["DeclineOpened", "decline_opened"]

decline_opened = Signal()


@dataclass(frozen=True, slots=True)
class DeclineOpened:
    tenant_id: str
    intake_id: str
    title: str
    metric_type: str
    domain: str
    event_type: str | None  # a CTRF test's identity; None for a domain's trend
    previous_avg: float
    current_avg: float
    change_pct: float  # positive is better
    sample_size: int
    urgency: str
