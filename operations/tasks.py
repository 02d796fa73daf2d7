"""Jobs of operations: the periodic sweep that expires autonomy budgets."""

from __future__ import annotations

from agent33.jobs import job

from . import services

__all__ = ["expire_budgets"]


@job("operations.tasks.expire_budgets", max_attempts=3, time_limit=300)
def expire_budgets() -> int:
    return len(services.budgets_expire())
