"""Table tests of the trend maths (DESIGN §5.3) against hand-computed cases."""

import math
import sys

import pytest

from outcomes.trends import compute_trend

# (values oldest first, metric, direction, previous_avg, current_avg, change_pct)
CASES = [
    # fewer than two values: stable, both averages the single value (or 0)
    ([], "success_rate", "stable", 0.0, 0.0, 0.0),
    ([5.0], "success_rate", "stable", 5.0, 5.0, 0.0),
    ([-3.0], "latency_ms", "stable", -3.0, -3.0, 0.0),
    # two values: previous = first, current = second
    ([1.0, 2.0], "success_rate", "improving", 1.0, 2.0, 100.0),
    ([2.0, 1.0], "quality_score", "declining", 2.0, 1.0, -50.0),
    # odd length: previous is the first len // 2 values
    ([1.0, 2.0, 3.0], "success_rate", "improving", 1.0, 2.5, 150.0),
    ([4.0, 2.0, 1.0, 3.0, 2.0], "quality_score", "declining", 3.0, 2.0, -100.0 / 3),
    # lower is better for latency and cost: the delta is negated
    ([100.0, 200.0], "latency_ms", "declining", 100.0, 200.0, -100.0),
    ([200.0, 100.0], "latency_ms", "improving", 200.0, 100.0, 50.0),
    ([0.5, 0.5, 0.25, 0.25], "cost_usd", "improving", 0.5, 0.25, 50.0),
    ([0.25, 0.25, 0.5, 0.5], "cost_usd", "declining", 0.25, 0.5, -100.0),
    # the ±5% threshold is strict: exactly 5% is stable
    ([20.0, 21.0], "success_rate", "stable", 20.0, 21.0, 5.0),
    ([20.0, 19.0], "success_rate", "stable", 20.0, 19.0, -5.0),
    ([20.0, 21.5], "success_rate", "improving", 20.0, 21.5, 7.5),
    ([20.0, 18.5], "success_rate", "declining", 20.0, 18.5, -7.5),
    ([100.0, 104.0], "quality_score", "stable", 100.0, 104.0, 4.0),
    ([100.0, 96.0], "latency_ms", "stable", 100.0, 96.0, 4.0),
    ([1.0, 1.0, 1.0, 1.0], "success_rate", "stable", 1.0, 1.0, 0.0),
    # zero baseline: the ratio is taken against 1.0
    ([0.0, 0.0, 0.0, 0.1], "success_rate", "stable", 0.0, 0.05, 5.0),
    ([0.0, 0.5], "success_rate", "improving", 0.0, 0.5, 50.0),
    ([0.0, 0.5], "cost_usd", "declining", 0.0, 0.5, -50.0),
    ([0.0, 0.0, 0.0], "latency_ms", "stable", 0.0, 0.0, 0.0),
    ([0.0, -0.25], "quality_score", "declining", 0.0, -0.25, -25.0),
    # negative values: the ratio uses |previous_avg|
    ([-10.0, -5.0], "quality_score", "improving", -10.0, -5.0, 50.0),
    ([-10.0, -15.0], "quality_score", "declining", -10.0, -15.0, -50.0),
    ([-10.0, -5.0], "latency_ms", "declining", -10.0, -5.0, -50.0),
    ([-4.0, 4.0], "success_rate", "improving", -4.0, 4.0, 200.0),
]


@pytest.mark.parametrize(
    ("values", "metric", "direction", "previous_avg", "current_avg", "change_pct"), CASES
)
def test_trend_maths(values, metric, direction, previous_avg, current_avg, change_pct):
    stats = compute_trend(values, metric_type=metric)
    assert stats.direction == direction
    assert stats.sample_size == len(values)
    assert stats.previous_avg == pytest.approx(previous_avg)
    assert stats.current_avg == pytest.approx(current_avg)
    assert stats.change_pct == pytest.approx(change_pct)


@pytest.mark.parametrize(
    "values",
    [
        [-1.5e308, 1.5e308],
        [1.7e308, 1.7e308, -1.7e308, -1.7e308],
        [1e-300, 1.7e308],
        [sys.float_info.max] * 5,
    ],
)
def test_extreme_values_stay_finite(values):
    stats = compute_trend(values, metric_type="success_rate")
    for number in (stats.previous_avg, stats.current_avg, stats.change_pct):
        assert math.isfinite(number)


def test_huge_swing_is_still_a_direction():
    assert compute_trend([-1.5e308, 1.5e308], metric_type="success_rate").direction == "improving"
    assert compute_trend([-1.5e308, 1.5e308], metric_type="cost_usd").direction == "declining"
