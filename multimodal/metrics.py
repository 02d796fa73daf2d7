"""Multimodal's series for GET /metrics (registered in MultimodalConfig.ready): requests by
modality, provider and state, from counts the database keeps as requests change. Provider
call latency and retries are observed where the calls happen (providers/http.py), and so is
spend: `agent33_multimodal_spend_usd_total` counts the cost of every completed request in the
process that ended it (a web worker in eager mode, a Celery worker otherwise), once its
transaction commits. A counter costs a scrape nothing, where a sum over results would grow
with history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import Sum
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent33.observability.row_counts import RowCounter

from .models import MultimodalRequest, RequestCount

__all__ = ["ROW_COUNTER", "collect", "record_spend"]

PROCESS_TYPE = "multimodal_request"  # the hub's type name for requests

ROW_COUNTER = RowCounter(
    name="multimodal_request", source=MultimodalRequest, counts=RequestCount,
    key={"modality": "modality", "provider": "provider", "state": "state"},
)


spend_usd = CounterMetric(
    "agent33_multimodal_spend_usd",
    "USD spent on completed multimodal requests (their metadata.cost_usd), by modality and "
    "provider.",
    ["modality", "provider"],
)


def record_spend(modality: str, provider: str, cost: Decimal) -> None:
    spend_usd.labels(modality, provider).inc(float(cost))


def collect() -> Iterator[Metric]:
    requests = GaugeMetricFamily(
        "agent33_multimodal_requests", "Multimodal requests by modality, provider and state.",
        labels=["modality", "provider", "state"],
    )
    by_state: Counter[str] = Counter()
    rows = (RequestCount.all_tenants.values_list("modality", "provider", "state")
            .annotate(total=Sum("count")).order_by("modality", "provider", "state"))
    for modality, provider, state, total in rows:
        requests.add_metric([modality, provider, state], total)
        by_state[state] += total
    yield requests
    # Requests are processes of the hub too: the same family operations reports.
    processes = GaugeMetricFamily(
        "agent33_processes", "Processes by type and status, every tenant.",
        labels=["type", "status"],
    )
    for state in sorted(by_state):
        processes.add_metric([PROCESS_TYPE, state], by_state[state])
    yield processes
