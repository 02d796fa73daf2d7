"""Provider call series, observed by the HTTP helper every cloud engine uses (http.py), in
whichever process makes the call: a web worker (eager execution) or a Celery worker (see
agent33.observability.metrics on how /metrics merges workers' series)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["provider_call_seconds", "provider_retries"]

provider_call_seconds = Histogram(
    "agent33_provider_call_duration_seconds",
    "One call to a cloud provider, from the first attempt to the answer or the failure "
    "(retries and their waits included), by provider and outcome (ok, failed, timeout).",
    ["provider", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
             float("inf")),
)
provider_retries = Counter(
    "agent33_provider_retries",
    "Attempts a provider call repeated, by provider and the reason (HTTP status or "
    "connection).",
    ["provider", "reason"],
)
