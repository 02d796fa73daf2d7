"""Demo outcome events for `manage.py seed_demo`: four weeks of events in three domains, one
of which (research's success rate) declines and so opens an improvement intake; and six
nights of benchmark reports (CTRF, through the same ingest as POST /v1/outcomes/ctrf) in which
one benchmark starts failing on the fifth night, which opens an intake too. Idempotent: a
tenant that already has the demo domains is left alone."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from django.utils import timezone

from agent33.tenancy.models import Tenant

from .choices import MetricType
from .ctrf import DOMAIN_PREFIX, ctrf_ingest
from .models import OutcomeEvent
from .services import event_record_bulk

DOMAINS = ("support", "research", "coding")
PER_SERIES = 42  # one value every 16 hours: four weeks
STEP = timedelta(hours=16)


def _drift(metric: str, domain_index: int) -> float:
    """Support improves on every metric, research's success rate declines, the rest hold."""
    if domain_index == 0:
        return 0.2
    if domain_index == 1 and metric == MetricType.SUCCESS_RATE:
        return -0.3
    return 0.0


def _series(metric: str, domain_index: int, rng: random.Random) -> list[float]:
    drift = _drift(metric, domain_index)
    base = {
        MetricType.SUCCESS_RATE: 0.75,
        MetricType.QUALITY_SCORE: 7.0,
        MetricType.LATENCY_MS: 850.0,
        MetricType.COST_USD: 0.04,
    }[metric]
    sign = -1 if metric in (MetricType.LATENCY_MS, MetricType.COST_USD) else 1
    values = []
    for i in range(PER_SERIES):
        progress = i / (PER_SERIES - 1)
        wobble = 0.04 * math.sin(i * 1.7) + rng.uniform(-0.03, 0.03)
        value = base * (1 + sign * drift * progress + wobble)
        if metric == MetricType.SUCCESS_RATE:
            value = min(1.0, max(0.0, value))
        values.append(round(value, 4))
    return values


def seed_demo(*, tenant: Tenant) -> None:
    _seed_events(tenant)
    _seed_benchmark_reports(tenant)


def _seed_events(tenant: Tenant) -> None:
    if OutcomeEvent.objects.filter(tenant=tenant, domain__in=DOMAINS).exists():
        return
    rng = random.Random(f"outcomes-{tenant.slug}")
    now = timezone.now().replace(microsecond=0)
    events = []
    for domain_index, domain in enumerate(DOMAINS):
        for metric in MetricType.values:
            for i, value in enumerate(_series(metric, domain_index, rng)):
                occurred_at = now - (PER_SERIES - i) * STEP - timedelta(minutes=domain_index)
                events.append(
                    {
                        "domain": domain,
                        "event_type": "task_completed" if i % 3 else "review",
                        "metric_type": metric,
                        "value": value,
                        "occurred_at": occurred_at,
                        "metadata": {"demo": True, "run": i},
                    }
                )
    event_record_bulk(tenant=tenant, events=events)


# --- benchmark reports -----------------------------------------------------------------

BENCHMARK_TOOL = "agent33-bench"
NIGHTS = 6
FAILING_FROM_NIGHT = 4  # the fifth report: two workers stop scaling
# name: (duration ms, the figure that decides it, unit, target, value while it passes)
BENCHMARKS = {
    "golden.speech_round_trip": (2_800, "word error rate, espeak → whisper-local", "ratio",
                                 "<= 0.15", 0.0),
    "golden.trend_maths": (150, "golden series with the expected direction and change_pct",
                           "series", "== 7", 7),
    "golden.decline_opens_one_intake": (220, "improvement intakes opened by the decline",
                                        "intakes", "== 1", 1),
    "bench.auth_overhead": (22_000, "authenticated ÷ unauthenticated no-op, p50", "ratio",
                            "<= 1.2", 1.08),
    "bench.outcomes_ingest": (34_000, "bulk API ÷ raw COPY, events/s", "ratio", ">= 0.25",
                              0.36),
    "bench.scale_workers": (55_000, "throughput, 2 workers ÷ 1 worker", "ratio", ">= 1.6",
                            1.78),
}


def _benchmark_report(night: int, start: datetime) -> dict:
    tests = []
    for name, (duration, metric, unit, target, value) in BENCHMARKS.items():
        failing = name == "bench.scale_workers" and night >= FAILING_FROM_NIGHT
        if failing:
            value = 1.31 - 0.02 * (night - FAILING_FROM_NIGHT)
        elif unit == "ratio" and value:
            value = round(value * (1 + 0.01 * ((night * 7 + len(name)) % 5 - 2)), 4)
        tests.append({
            "name": name,
            "status": "failed" if failing else "passed",
            # ±1 % from night to night: no test slows down (each test's latency is watched).
            "duration": round(duration * (1 + 0.01 * ((night * 5 + len(name)) % 3 - 1))),
            "suite": [name.split(".")[0]],
            "extra": {"metric": metric, "value": value, "unit": unit, "target": target},
            **({"message": f"missed: {metric} {value} {unit} (target {target})"}
               if failing else {}),
        })
    start_ms = int(start.timestamp() * 1000)
    failed = sum(test["status"] == "failed" for test in tests)
    return {
        "reportFormat": "CTRF",
        "specVersion": "0.0.0",
        "results": {
            "tool": {"name": BENCHMARK_TOOL},
            "summary": {"tests": len(tests), "passed": len(tests) - failed, "failed": failed,
                        "skipped": 0, "pending": 0, "other": 0, "start": start_ms,
                        "stop": start_ms + sum(t["duration"] for t in tests)},
            "tests": tests,
            "environment": {"commit": f"{0xD3A0 + night:x}{'0' * 36}", "branchName": "main"},
        },
    }


def _seed_benchmark_reports(tenant: Tenant) -> None:
    domain = f"{DOMAIN_PREFIX}{BENCHMARK_TOOL}"
    if OutcomeEvent.objects.filter(tenant=tenant, domain=domain).exists():
        return
    tonight = timezone.now().replace(hour=2, minute=0, second=0, microsecond=0)
    for night in range(NIGHTS):
        ctrf_ingest(tenant=tenant,
                    report=_benchmark_report(night, tonight - timedelta(days=NIGHTS - night)))
