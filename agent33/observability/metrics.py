"""Prometheus metrics: HTTP series from a middleware, domain series from the apps.

Processes, several at once. With `PROMETHEUS_MULTIPROC_DIR` set (gunicorn with several
workers, Celery's prefork pool), prometheus_client writes every counter and histogram to a
memory-mapped file per process in that directory, and `GET /metrics` merges the files of
every process: the answer is the whole service's, whichever worker serves it.
`AGENT33_METRICS_MERGE_DIRS` names more such directories to merge (the Celery workers', on
the same host or a shared volume), so provider calls made in workers are counted too. The
directories are emptied when the service starts (gunicorn's `on_starting`, Celery's
`worker_init`), and a worker that exits is marked dead (`child_exit`,
`worker_process_shutdown`). Without the setting every process keeps its own series (fine
for one process: `runserver`, tests).

Domain series (`agent33_*`) come from the database, not from process memory: each app
registers a collector at start-up (`register_collector`, from its AppConfig.ready), so the
core imports no app. A collector must be cheap: it reads counts maintained as rows change
(`agent33.observability.row_counts`) or a small indexed query, never a scan of history.
Collectors that yield a family of the same name are merged into one family (operations and
multimodal both report `agent33_processes`).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = [
    "HttpMetricsMiddleware",
    "clear_multiprocess_dir",
    "mark_dead",
    "multiprocess_dirs",
    "register_collector",
    "registered_collectors",
    "render_metrics",
]

DomainCollector = Callable[[], Iterable[Metric]]
_collectors: dict[str, DomainCollector] = {}


def register_collector(name: str, collect: DomainCollector) -> None:
    """Add (or replace) a domain collector: `collect()` yields prometheus_client Metric
    families (GaugeMetricFamily, CounterMetricFamily, ...) read from the database."""
    _collectors[name] = collect


def registered_collectors() -> dict[str, DomainCollector]:
    return dict(_collectors)


# --- HTTP series ------------------------------------------------------------------------
# Named and labelled as django-prometheus names them, so dashboards built for it work.

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                    7.5, 10.0, 25.0, 50.0, float("inf"))

http_latency = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Time from the request reaching Django to its response, by view and method.",
    ["view", "method"],
    buckets=_LATENCY_BUCKETS,
)
http_responses = Counter(
    "django_http_responses_total_by_status_view_method",
    "Responses by status, view and method.",
    ["status", "view", "method"],
)


def _view_label(request) -> str:
    # The route's name, never the path: ids in paths would make a series per object.
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"
    return match.view_name or match.route or "<unnamed>"


class HttpMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        view = _view_label(request)
        method = request.method if request.method in _METHODS else "<other>"
        http_latency.labels(view, method).observe(time.perf_counter() - started)
        http_responses.labels(str(response.status_code), view, method).inc()
        return response


# --- exposition -------------------------------------------------------------------------


def multiprocess_dirs() -> list[str]:
    """This process's PROMETHEUS_MULTIPROC_DIR, then AGENT33_METRICS_MERGE_DIRS."""
    own = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return [d for d in (own, *settings.AGENT33_METRICS_MERGE_DIRS) if d]


class _FilesCollector:
    """Every process's series, from the files of every multiprocess directory."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    def collect(self) -> Iterable[Metric]:
        files = [f for d in self.dirs for f in glob.glob(os.path.join(d, "*.db"))]
        return MultiProcessCollector.merge(files, accumulate=True)


class _ProcessCollector:
    """This process's own registry (one-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class _DomainCollector:
    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for collect in _collectors.values():
            for family in collect():
                known = merged.get(family.name)
                if known is None:
                    merged[family.name] = family
                else:
                    known.samples.extend(family.samples)
        return merged.values()


def render_metrics(accept: str | None) -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics when the scraper asks for it)."""
    from .row_counts import compact_row_counts

    # The kept counts are delta rows: fold them first, so the collectors sum about one row
    # per key however much was written since the last scrape.
    compact_row_counts()
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry.register(_FilesCollector(multiprocess_dirs()))
    else:
        registry.register(_ProcessCollector())
    registry.register(_DomainCollector())
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# --- process bookkeeping ------------------------------------------------------------------


def clear_multiprocess_dir() -> None:
    """At service start, before any worker is forked: the last run's files would be merged
    into this run's series otherwise."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in Path(path).glob("*.db"):
        stale.unlink()


def mark_dead(pid: int) -> None:
    """A worker process exited: its live gauges stop counting (its counters stay)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)
