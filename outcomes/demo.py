"""Demo outcome events for `manage.py seed_demo`: four weeks of events in three domains, one
of which (research's success rate) declines and so opens an improvement intake. Idempotent:
a tenant that already has the demo domains is left alone."""

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
PER_SERIES = 42  # one value every 16 hours: four weeks
STEP = timedelta(hours=16)


def _drift(metric: str, domain_index: int) -> float:
    """Support improves on every metric, research's success rate declines, the rest hold."""
    if domain_index == 0:
        return 0.2
    if domain_index == 1 and metric == MetricType.SUCCESS_RATE:
        return -0.3
    return 0.0


def _series(metric: str, domain_index: int, rng: random.Random) -> list[float]:
    drift = _drift(metric, domain_index)
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
    if OutcomeEvent.objects.filter(tenant=tenant, domain__in=DOMAINS).exists():
        return
    rng = random.Random(f"outcomes-{tenant.slug}")
    now = timezone.now().replace(microsecond=0)
    events = []
    for domain_index, domain in enumerate(DOMAINS):
        for metric in MetricType.values:
            for i, value in enumerate(_series(metric, domain_index, rng)):
                occurred_at = now - (PER_SERIES - i) * STEP - timedelta(minutes=domain_index)
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
