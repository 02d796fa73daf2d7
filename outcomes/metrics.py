"""Outcomes' series for GET /metrics (registered in OutcomesConfig.ready): events ingested,
from the per-key counts the services keep with every insert (OutcomeCount), so a scrape
reads one row per (tenant, metric, domain, event type), not the events."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Sum
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from .models import OutcomeCount

__all__ = ["collect"]


def collect() -> Iterator[Metric]:
    events = CounterMetricFamily(
        "agent33_outcome_events_ingested", "Outcome events recorded, by metric type.",
        labels=["metric_type"],
    )
    rows = (OutcomeCount.all_tenants.values_list("metric_type")
            .annotate(total=Sum("count")).order_by("metric_type"))
    for metric_type, total in rows:
        events.add_metric([metric_type], total)
    yield events
