"""The project's settings without the metrics middleware: the baseline of
bench/metrics_scrape.py's per-request overhead."""

from agent33.settings import *  # noqa: F403
from agent33.settings import MIDDLEWARE

MIDDLEWARE = [m for m in MIDDLEWARE if m != "agent33.observability.metrics.HttpMetricsMiddleware"]
