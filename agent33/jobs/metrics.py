"""`agent33_jobs{job,state}` for GET /metrics: background jobs queued, retrying, running and
failed (after their last try), in both modes (Celery records its last failures in the same
table)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent33.observability.metrics import register_collector

from .selectors import job_counts


def collect() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "agent33_jobs", "Background jobs by job name and state (queued, retrying, running, "
        "failed: used every try).", labels=["job", "state"])
    for name, state, total in job_counts():
        family.add_metric([name, state], total)
    yield family


register_collector("jobs", collect)
