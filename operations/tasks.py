"""Celery tasks of operations: the periodic sweep that expires autonomy budgets."""

from __future__ import annotations

from celery import shared_task

from . import services

__all__ = ["expire_budgets"]


@shared_task(name="operations.tasks.expire_budgets")
def expire_budgets() -> int:
    return len(services.budgets_expire())
