"""Demo outcome events for `manage.py seed_demo` (idempotent: a tenant that already has
events is left alone)."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from django.utils import timezone

from agent33.tenancy.models import Tenant

from .choices import MetricType
from .models import OutcomeEvent
from .services import event_record_bulk

DOMAINS = ("support", "research", "coding")
PER_SERIES = 40


def _series(metric: str, domain_index: int, rng: random.Random) -> list[float]:
    """Forty values with a visible direction: one domain improves, one declines, one holds."""
    drift = (0.25, -0.25, 0.0)[domain_index]
    base = {
        MetricType.SUCCESS_RATE: 0.75,
        MetricType.QUALITY_SCORE: 7.0,
        MetricType.LATENCY_MS: 850.0,
        MetricType.COST_USD: 0.04,
    }[metric]
    sign = -1 if metric in (MetricType.LATENCY_MS, MetricType.COST_USD) else 1
    values = []
    for i in range(PER_SERIES):
        progress = i / (PER_SERIES - 1)
        wobble = 0.04 * math.sin(i * 1.7) + rng.uniform(-0.03, 0.03)
        value = base * (1 + sign * drift * progress + wobble)
        if metric == MetricType.SUCCESS_RATE:
            value = min(1.0, max(0.0, value))
        values.append(round(value, 4))
    return values


def seed_demo(*, tenant: Tenant) -> None:
    if OutcomeEvent.objects.filter(tenant=tenant).exists():
        return
    rng = random.Random(f"outcomes-{tenant.slug}")
    now = timezone.now().replace(microsecond=0)
    events = []
    for domain_index, domain in enumerate(DOMAINS):
        for metric in MetricType.values:
            for i, value in enumerate(_series(metric, domain_index, rng)):
                occurred_at = now - timedelta(hours=(PER_SERIES - i) * 6, minutes=domain_index)
                events.append(
                    {
                        "domain": domain,
                        "event_type": "task_completed" if i % 3 else "review",
                        "metric_type": metric,
                        "value": value,
                        "occurred_at": occurred_at,
                        "metadata": {"demo": True, "run": i},
                    }
                )
    event_record_bulk(tenant=tenant, events=events)
