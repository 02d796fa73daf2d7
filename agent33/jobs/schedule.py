"""The periodic schedule, one definition for both modes: `AGENT33_SCHEDULE` in settings
(`{entry: {"job": name, "every": seconds}}`). Celery beat reads it as
`CELERY_BEAT_SCHEDULE` (settings); `manage.py worker` runs it itself (`queue_due`)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import ScheduleState

__all__ = ["queue_due"]


def entries() -> dict[str, dict]:
    return dict(getattr(settings, "AGENT33_SCHEDULE", {}))


def queue_due() -> list[str]:
    """Queue every periodic job that is due (at start-up: all of them). Each run is claimed
    by moving its `next_run_at` with a conditional UPDATE in the transaction that queues it,
    so of several workers exactly one queues it, and a crash queues it later, not never."""
    from . import enqueue

    now = timezone.now()
    schedule = entries()
    # One read when nothing is due (every second, on every worker): no lock, no write.
    due_at = dict(ScheduleState.objects.filter(name__in=schedule)
                  .values_list("name", "next_run_at"))
    for name in schedule.keys() - due_at.keys():
        ScheduleState.objects.get_or_create(name=name, defaults={"next_run_at": now})
        due_at[name] = now
    queued = []
    for name, entry in schedule.items():
        if due_at[name] > now:
            continue
        with transaction.atomic():
            claimed = ScheduleState.objects.filter(name=name, next_run_at__lte=now).update(
                next_run_at=now + timedelta(seconds=float(entry["every"])), last_run_at=now)
            if claimed:
                enqueue(entry["job"])
                queued.append(name)
    return queued
