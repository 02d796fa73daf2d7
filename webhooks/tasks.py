"""Jobs of webhooks: the per-endpoint drain and the periodic sweep (delivery.py)."""

from __future__ import annotations

from agent33.jobs import job

from . import delivery

__all__ = ["drain", "sweep"]


# One try of a drain is bounded by its budget plus one delivery's timeout; the time limit
# kills a drain stuck beyond that (its lease then expires and the sweep puts the delivery
# back), so a dead receiver never holds a worker slot for long.
@job("webhooks.drain", max_attempts=3, backoff=(5.0,),
     time_limit=delivery.DRAIN_BUDGET_SECONDS + 3 * delivery.TIMEOUT_SECONDS)
def drain(*, endpoint_id: str) -> int:
    return delivery.drain_endpoint(endpoint_id)


@job("webhooks.sweep", max_attempts=1, time_limit=60)
def sweep() -> int:
    return delivery.sweep()
