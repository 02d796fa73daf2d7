"""Jobs of operations: the periodic sweep that expires autonomy budgets, and the pruning of
the live hub's change log."""

from __future__ import annotations

from agent33.jobs import job

from . import changelog, services

__all__ = ["expire_budgets", "prune_hub_events"]


@job("operations.tasks.expire_budgets", max_attempts=3, time_limit=300)
def expire_budgets() -> int:
    return len(services.budgets_expire())


@job("operations.tasks.prune_hub_events", max_attempts=3, time_limit=300)
def prune_hub_events() -> int:
    return changelog.prune_events()
