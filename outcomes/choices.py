"""Metric types and trend directions (DESIGN §5.3)."""

from __future__ import annotations

from django.db import models

__all__ = ["LOWER_IS_BETTER", "METRIC_TYPES", "MetricType", "TrendDirection"]


class MetricType(models.TextChoices):
    SUCCESS_RATE = "success_rate", "Success rate"
    QUALITY_SCORE = "quality_score", "Quality score"
    LATENCY_MS = "latency_ms", "Latency (ms)"
    COST_USD = "cost_usd", "Cost (USD)"


# The order every dashboard, chart and summary lists the metrics in.
METRIC_TYPES: tuple[str, ...] = tuple(MetricType.values)

# For these a falling value is an improvement, so the trend's delta is negated.
LOWER_IS_BETTER: frozenset[str] = frozenset({MetricType.LATENCY_MS, MetricType.COST_USD})


class TrendDirection(models.TextChoices):
    IMPROVING = "improving", "Improving"
    STABLE = "stable", "Stable"
    DECLINING = "declining", "Declining"
