"""Geometry for the server-rendered SVG trend charts (no JavaScript, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ChartPoint", "LineChart", "format_number", "line_chart"]

WIDTH, HEIGHT = 440, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 22


def format_number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e15 else f"{value:.3e}"


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    value: float
    occurred_at: datetime

    @property
    def label(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} UTC: {format_number(self.value)}"


@dataclass(frozen=True)
class Segment:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    points: list[ChartPoint]
    polyline: str
    y_ticks: list[tuple[float, str]]  # (y, label)
    averages: list[Segment]  # previous and current averages over their halves
    split_x: float | None  # where "previous" ends and "current" starts
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM


def line_chart(
    points: list[tuple[datetime, float]], *, previous_avg: float, current_avg: float
) -> LineChart:
    """Points oldest first, evenly spaced (the window is a count of events, not a span of
    time); the y axis spans the values and both averages."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [value for _, value in points]
    low = min([*values, previous_avg, current_avg]) if values else 0.0
    high = max([*values, previous_avg, current_avg]) if values else 1.0
    if high - low < 1e-12 * max(1.0, abs(high)):
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    span = high - low

    def y_of(value: float) -> float:
        return round(TOP + (high - value) / span * plot_h, 2)

    count = len(points)
    step = plot_w / (count - 1) if count > 1 else 0.0

    def x_of(index: int) -> float:
        return round(LEFT + index * step if count > 1 else LEFT + plot_w / 2, 2)

    chart_points = [
        ChartPoint(x_of(i), y_of(value), value, occurred_at)
        for i, (occurred_at, value) in enumerate(points)
    ]
    averages: list[Segment] = []
    split_x = None
    if count >= 2:
        split = count // 2
        split_x = round((x_of(split - 1) + x_of(split)) / 2, 2)
        averages = [
            Segment(x_of(0), y_of(previous_avg), split_x, y_of(previous_avg),
                    f"previous average {format_number(previous_avg)}"),
            Segment(split_x, y_of(current_avg), x_of(count - 1), y_of(current_avg),
                    f"current average {format_number(current_avg)}"),
        ]
    ticks = [(y_of(v), format_number(v)) for v in (high, (high + low) / 2, low)]
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        points=chart_points,
        polyline=" ".join(f"{p.x},{p.y}" for p in chart_points),
        y_ticks=ticks,
        averages=averages,
        split_x=split_x,
    )
