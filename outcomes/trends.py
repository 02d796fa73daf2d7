"""Trend maths (DESIGN §5.3), pure: no database, no Django.

The latest `window` values, oldest first, are split in two: the first `len // 2` are
"previous", the rest "current". The change of the averages, signed so that positive is
better, relative to the previous average (or 1.0 when that is 0), decides the direction.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .choices import LOWER_IS_BETTER, TrendDirection

__all__ = ["THRESHOLD", "TrendStats", "compute_trend"]

THRESHOLD = 0.05  # a change of more than ±5% is a direction; anything within is stable
_MAX = sys.float_info.max


@dataclass(frozen=True)
class TrendStats:
    direction: str
    sample_size: int
    previous_avg: float
    current_avg: float
    change_pct: float  # ratio x 100, positive = better


def _mean(values: Sequence[float]) -> float:
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        # Values near the float limit: dividing first keeps the partial sums within range
        # (up to rounding at the very limit, which _finite clamps).
        count = len(values)
        return _finite(sum(v / count for v in values))


def _finite(x: float) -> float:
    # Only values near ±1.8e308 can overflow the delta; keep the response valid JSON.
    if math.isnan(x):
        return 0.0
    return max(-_MAX, min(_MAX, x))


def compute_trend(values: Sequence[float], *, metric_type: str) -> TrendStats:
    """`values` oldest first (the latest `window` events of one metric)."""
    size = len(values)
    if size < 2:
        only = float(values[0]) if size else 0.0
        return TrendStats(TrendDirection.STABLE.value, size, only, only, 0.0)
    split = size // 2
    previous_avg = _mean(values[:split])
    current_avg = _mean(values[split:])
    delta = current_avg - previous_avg
    if metric_type in LOWER_IS_BETTER:
        delta = -delta
    ratio = delta / (abs(previous_avg) or 1.0)
    if ratio > THRESHOLD:
        direction = TrendDirection.IMPROVING.value
    elif ratio < -THRESHOLD:
        direction = TrendDirection.DECLINING.value
    else:
        direction = TrendDirection.STABLE.value
    return TrendStats(direction, size, previous_avg, current_avg, _finite(ratio * 100.0))
