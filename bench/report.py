"""The benchmark smoke job's report: a CTRF document (Common Test Report Format, the JSON that
CI dashboards read, and that POST /v1/outcomes/ctrf takes) and a table for people.

Each test is one golden task or one benchmark. Its `extra` holds the figure that decides it as
`{metric, value, unit, target}` and, when it measured more than one, every figure in the same
shape under `figures`. A test passes when each of its figures with a target meets it.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Figure, missed

__all__ = ["TOOL_NAME", "TestResult", "ctrf_document", "git_environment", "table"]

TOOL_NAME = "agent33-bench"
TOOL_VERSION = "1.0.0"
CTRF_SPEC_VERSION = "0.0.0"


@dataclass
class TestResult:
    name: str
    suite: str  # "golden" or "bench"
    status: str  # "passed", "failed" or "skipped"
    start_ms: int
    stop_ms: int
    figures: list[Figure] = field(default_factory=list)
    message: str = ""
    error: bool = False  # the harness or a bench script broke (not a missed target)

    @property
    def duration_ms(self) -> int:
        return max(0, self.stop_ms - self.start_ms)


def _value(value: float) -> float | None:
    """JSON has no NaN or Infinity (and the ingest refuses them): a non-finite figure is null,
    and counts as a miss (Figure.met)."""
    if isinstance(value, bool) or not math.isfinite(value):
        return None
    return round(float(value), 6)


def _figure(figure: Figure) -> dict:
    return {"metric": figure.metric, "value": _value(figure.value), "unit": figure.unit,
            "target": figure.target}


def _headline(figures: list[Figure]) -> Figure:
    """The figure that decides the test: its first missed target, else its first target."""
    judged = [f for f in figures if f.target is not None]
    return next((f for f in judged if not f.met), judged[0] if judged else figures[0])


def extra_of(figures: list[Figure]) -> dict:
    if not figures:
        return {}
    extra = _figure(_headline(figures))
    if len(figures) > 1:
        extra["figures"] = [_figure(figure) for figure in figures]
    return extra


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              check=False, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def git_environment() -> dict[str, str]:
    """CTRF `environment`: the commit and branch measured, and the machine."""
    environment = {
        "appName": "agent33-control-plane",
        "osPlatform": sys.platform,
        "osRelease": platform.release(),
        "osVersion": platform.version(),
    }
    commit = _git("rev-parse", "HEAD")
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    if commit:
        environment["commit"] = commit
    if branch and branch != "HEAD":
        environment["branchName"] = branch
    if os.environ.get("CI"):
        environment["testEnvironment"] = "ci"
    return environment


def _test(result: TestResult) -> dict:
    test = {
        "name": result.name,
        "status": result.status,
        "duration": result.duration_ms,
        "start": result.start_ms,
        "stop": result.stop_ms,
        "suite": [result.suite],
    }
    if result.message:
        test["message"] = result.message
    if result.error:
        test["rawStatus"] = "error"
    extra = extra_of(result.figures)
    if extra:
        test["extra"] = extra
    return test


def ctrf_document(
    results: list[TestResult], *, start_ms: int, stop_ms: int, environment: dict[str, str]
) -> dict:
    counts = {status: sum(r.status == status for r in results)
              for status in ("passed", "failed", "skipped", "pending", "other")}
    return {
        "reportFormat": "CTRF",
        "specVersion": CTRF_SPEC_VERSION,
        "reportId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "generatedBy": "bench/smoke.py",
        "results": {
            "tool": {"name": TOOL_NAME, "version": TOOL_VERSION},
            "summary": {
                "tests": len(results),
                **counts,
                "suites": len({r.suite for r in results}),
                "start": start_ms,
                "stop": stop_ms,
                "duration": max(0, stop_ms - start_ms),
            },
            "tests": [_test(result) for result in results],
            "environment": environment,
        },
    }


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _verdict(result: TestResult) -> str:
    if result.error:
        return "ERROR"
    return {"passed": "ok", "failed": "MISS", "skipped": "skip"}.get(result.status, "?")


def table(results: list[TestResult]) -> str:
    """One row per figure: the verdict and time on each test's first row, a missed target
    marked `<-`."""
    rows = [("result", "test", "figure", "value", "target", "time")]
    for result in results:
        first = (_verdict(result), result.name)
        time_text = f"{result.duration_ms / 1000:.1f} s"
        figures = result.figures or [None]
        for index, figure in enumerate(figures):
            head = first if index == 0 else ("", "")
            when = time_text if index == 0 else ""
            if figure is None:
                rows.append((*head, "-", "", "", when))
                continue
            value = f"{_number(figure.value)} {figure.unit}"
            target = figure.target or ""
            if figure.met is False:
                target += "  <-"
            rows.append((*head, figure.metric, value, target, when))
        # A miss shows at its figure; other failures, errors and skips say why here.
        if result.message and result.status != "passed" and not missed(result.figures):
            rows.append(("", "", f"  {result.message}", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    widths[2] = min(widths[2], 64)
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                 row[2] if len(row[2]) > widths[2] and not row[3] else row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4].ljust(widths[4]), row[5].rjust(widths[5])]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
