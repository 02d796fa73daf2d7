"""Outcome series at ten million events: GET /v1/outcomes/series for a tenant with 10M events
and one with 10k, and the query plans behind it.

Usage (PostgreSQL reachable as postgres@127.0.0.1:5432, the default):

    .venv/bin/python bench/outcomes_series.py [--large 10000000] [--small 10000]
        [--days 91] [--requests 60] [--server postgres://...] [--keep | --reuse]

What it does, against a PostgreSQL database it creates for itself
(`agent33_bench_outcomes_series`, dropped again unless --keep):

1. migrates it and creates the two tenants with an `outcomes:read` token each;
2. loads each tenant's events over the last `--days` days (4 metrics x 8 domains x 4 event
   types, as bench/outcomes_ingest.py) with psycopg COPY, secondary indexes dropped for the
   load and rebuilt after, and the rollups those events make (the ingest's own maths,
   outcomes.rollups.cells_from_arrays, a UTC day at a time) with COPY too; the load is the
   bench's setup, not product code;
3. times each case for both tenants in pairs (which goes first drawn per pair), through the
   whole Django stack in-process (django.test.Client with a bearer token), and prints
   p50/p95 and the large/small ratios. The targets are on "90 days by day": p50 <= 50 ms at
   the large size and <= 2x the small tenant's p50;
4. runs EXPLAIN ANALYZE on every query the large tenant's series requests issue and fails if
   any plan reads the events table (a series reads rollups only, the current bucket
   included), printing each plan's node types and the rollup rows it read.

`run()` returns the figures (`make bench-smoke` calls it at a smaller size).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    Figure,
    database_name,
    drop_postgres_database,
    fresh_postgres_database,
    missed,
)
from bench.outcomes_scale import COLUMNS as EVENT_COLUMNS  # noqa: E402
from bench.outcomes_scale import METRICS, plan_nodes  # noqa: E402
from bench.outcomes_scale import TABLE as EVENTS  # noqa: E402

DB_NAME = "agent33_bench_outcomes_series"
ROLLUPS = "outcomes_outcomerollup"
ROLLUP_COLUMNS = (
    "tenant_id, metric_type, domain, event_type, span, bucket_start, count, total, minimum, "
    "maximum, sketch, writer"
)
DOMAINS = tuple(f"domain-{n:02}" for n in range(8))
EVENT_TYPES = ("task_completed", "review", "handoff", "retry")
EVENT_TYPES_PG = ["varchar", "varchar", "varchar", "varchar", "varchar", "float8", "timestamptz",
                  "jsonb", "timestamptz"]
ROLLUP_TYPES_PG = ["varchar", "varchar", "varchar", "varchar", "int4", "timestamptz", "int8",
                   "float8", "float8", "float8", "bytea", "int8"]
TARGET_MS = 50.0
TARGET_RATIO = 2.0


def _keys() -> list[tuple[str, str, str]]:
    return [(m, d, e) for m in METRICS for d in DOMAINS for e in EVENT_TYPES]


def _values(rng: np.random.Generator, metrics: np.ndarray) -> np.ndarray:
    latency = rng.lognormal(5.5, 0.8, len(metrics))
    success = (rng.random(len(metrics)) < 0.93).astype(np.float64)
    quality = rng.uniform(1, 10, len(metrics))
    cost = rng.lognormal(-6, 1.0, len(metrics))
    return np.select([metrics == 0, metrics == 1, metrics == 2], [success, quality, latency],
                     cost)


def load(database_url: str, sizes: dict[str, int], days: int, end: datetime) -> dict[str, int]:
    """COPY each tenant's events and their rollups, a UTC day at a time; returns the rollup
    rows per tenant."""
    from outcomes.rollups import cells_from_arrays

    keys = _keys()
    metric_of_key = np.array([METRICS.index(m) for m, _, _ in keys])
    rng = np.random.default_rng(27)
    first_day = int((end - timedelta(days=days)).timestamp()) // 86_400 * 86_400
    created = datetime.now(UTC)
    rollup_rows = dict.fromkeys(sizes, 0)
    with psycopg.connect(database_url) as conn:
        constraint = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'", (ROLLUPS,)).fetchone()
        dropped = []
        for table in (EVENTS, ROLLUPS):
            dropped += conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                "AND indexname NOT LIKE %s AND indexname <> %s",
                (table, "%_pkey", constraint[0])).fetchall()
        conn.execute(f'ALTER TABLE {ROLLUPS} DROP CONSTRAINT "{constraint[0]}"')
        for name, _ in dropped:
            conn.execute(f'DROP INDEX "{name}"')
        for table in (EVENTS, ROLLUPS):  # the tenant FK checks, per row: the slowest part
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        for slug, total in sizes.items():
            per_day = np.full(days, total // days)
            per_day[: total % days] += 1
            for day, count in enumerate(per_day.tolist()):
                start = first_day + day * 86_400
                seconds = np.sort(rng.integers(start, min(start + 86_400,
                                                          int(end.timestamp())), count))
                key_of_event = rng.integers(0, len(keys), count)
                values = np.round(_values(rng, metric_of_key[key_of_event]), 6)
                with conn.cursor() as cursor, cursor.copy(
                        f"COPY {EVENTS} ({EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(EVENT_TYPES_PG)
                    prefix = f"outcome-{slug[0]}{day:05x}"
                    for n, (second, key, value) in enumerate(zip(
                            seconds.tolist(), key_of_event.tolist(), values.tolist(),
                            strict=True)):
                        metric, domain, event_type = keys[key]
                        copy.write_row((f"{prefix}{n:026x}", slug, domain, event_type, metric,
                                        value, datetime.fromtimestamp(second, UTC), "{}",
                                        created))
                cells = cells_from_arrays(keys, key_of_event, seconds, values)
                with conn.cursor() as cursor, cursor.copy(
                        f"COPY {ROLLUPS} ({ROLLUP_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(ROLLUP_TYPES_PG)
                    for cell in cells:
                        copy.write_row((slug, *cell.key, cell.span,
                                        datetime.fromtimestamp(cell.start, UTC), cell.count,
                                        cell.total, cell.minimum, cell.maximum, cell.sketch, 0))
                rollup_rows[slug] += len(cells)
            conn.commit()
            print(f"  {slug}: {total:,} events, {rollup_rows[slug]:,} rollup rows", flush=True)
        for table in (EVENTS, ROLLUPS):
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
        print("  rebuilding indexes ...", flush=True)
        for _, definition in dropped:
            conn.execute(definition)
        conn.execute(f'ALTER TABLE {ROLLUPS} ADD CONSTRAINT "{constraint[0]}" {constraint[1]}')
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {EVENTS}")
        conn.execute(f"VACUUM ANALYZE {ROLLUPS}")
    return rollup_rows


def run(
    *,
    large: int = 10_000_000,
    small: int = 10_000,
    days: int = 91,
    requests: int = 60,
    server: str = "postgres://postgres@127.0.0.1:5432",
    keep: bool = False,
    reuse: bool = False,
) -> list[Figure]:
    """The measurement; returns its figures. Sets up Django in this process: run it once
    per process. `reuse`: time against the database a `keep` run left (same sizes)."""
    if reuse:
        keep = True
        database_url = f"{server}/{database_name(DB_NAME)}"
    else:
        database_url = fresh_postgres_database(DB_NAME, f"{server}/postgres")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "AGENT33_THROTTLE_RATE": "1000000/min",
        "PYTHONWARNINGS": "ignore:No directory at",
    }
    if not reuse:
        print(f"database {DB_NAME}: migrating ...", flush=True)
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                              env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from agent33.tenancy.services import tenant_create, token_issue
    from outcomes.models import OutcomeEvent, OutcomeRollup
    from outcomes.services import outcome_counts_rebuild

    sizes = {"large": large, "small": small}
    tokens = {}
    for slug in sizes:
        tenant = Tenant.objects.get(pk=slug) if reuse else tenant_create(slug=slug)
        tokens[slug] = token_issue(tenant=tenant, scopes=["outcomes:read"]).plaintext
    if reuse:
        rollup_rows, counted = {}, {}
        for slug in sizes:
            with tenant_scope(Tenant.objects.get(pk=slug)):
                rollup_rows[slug] = OutcomeRollup.objects.count()
                counted[slug] = OutcomeEvent.objects.count()
                if slug == "large":
                    # Timed as of the newest event: the periods hold what a fresh run's would.
                    end = OutcomeEvent.objects.latest("occurred_at").occurred_at + timedelta(
                        seconds=1)
        sizes = counted
        large, small = sizes["large"], sizes["small"]
        print(f"reusing {DB_NAME}: {large:,} + {small:,} events", flush=True)
    else:
        end = datetime.now(UTC)
        print(f"loading {large:,} + {small:,} events over {days} days ...", flush=True)
        started = time.perf_counter()
        rollup_rows = load(database_url, sizes, days, end)
        outcome_counts_rebuild()
        print(f"loaded in {time.perf_counter() - started:.0f} s\n", flush=True)
    importlib.import_module("agent33.wsgi")  # set up as a gunicorn worker is

    to = end.isoformat()

    def days_back(n: int) -> str:
        return (end - timedelta(days=n)).isoformat()

    base = {"metric_type": "latency_ms", "to": to}
    cases = {
        "90 days by day": {**base, "bucket": "day", "from": days_back(90)},
        "90 days by day, Berlin": {**base, "bucket": "day", "from": days_back(90),
                                   "tz": "Europe/Berlin"},
        "90 days by day, Kolkata": {**base, "bucket": "day", "from": days_back(90),
                                    "tz": "Asia/Kolkata"},
        "90 days, one domain": {**base, "bucket": "day", "from": days_back(90),
                                "domain": DOMAINS[3]},
        "90 days, one event type": {**base, "bucket": "day", "from": days_back(90),
                                    "domain": DOMAINS[3], "event_type": EVENT_TYPES[1]},
        "12 weeks vs previous": {**base, "bucket": "week", "from": days_back(84),
                                 "compare": "previous"},
        "7 days by hour": {**base, "bucket": "hour", "from": days_back(7)},
        "1000 minutes": {**base, "bucket": "minute",
                         "from": (end - timedelta(minutes=999)).isoformat()},
    }
    clients = {slug: Client(HTTP_AUTHORIZATION=f"Bearer {tokens[slug]}") for slug in sizes}

    def timed(slug: str, params: dict) -> float:
        begin = time.perf_counter()
        response = clients[slug].get("/v1/outcomes/series", params)
        elapsed = (time.perf_counter() - begin) * 1000
        if response.status_code != 200:
            sys.exit(f"{params}: {response.status_code} {response.content[:300]!r}")
        return elapsed

    order_rng = random.Random(27)
    results: dict[str, dict[str, list[float]]] = {}
    for name, params in cases.items():
        samples: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(5):
            for slug in samples:
                timed(slug, params)
        for _ in range(requests):
            pair = ("small", "large") if order_rng.random() < 0.5 else ("large", "small")
            for slug in pair:
                samples[slug].append(timed(slug, params))
        results[name] = samples
        counted = clients["large"].get("/v1/outcomes/series", params).json()["summary"]["count"]
        print(f"  {name}: {counted:,} events in the period", flush=True)

    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    print(f"\nlatency in ms over {requests} requests each (small = {small:,} events, "
          f"large = {large:,}; rollup rows {rollup_rows['small']:,} / {rollup_rows['large']:,})")
    print(f"{'case':26} {'p50 small':>10} {'p50 large':>10} {'ratio':>6}   "
          f"{'p95 small':>10} {'p95 large':>10} {'ratio':>6}")
    for name, samples in results.items():
        p50s, p50l = pct(samples["small"], 50), pct(samples["large"], 50)
        p95s, p95l = pct(samples["small"], 95), pct(samples["large"], 95)
        print(f"{name:26} {p50s:10.2f} {p50l:10.2f} {p50l / p50s:6.2f}   "
              f"{p95s:10.2f} {p95l:10.2f} {p95l / p95s:6.2f}")
    headline = results["90 days by day"]
    p50_large = pct(headline["large"], 50)
    ratio = p50_large / pct(headline["small"], 50)

    print("\nEXPLAIN ANALYZE of every query the large tenant's series requests issue:")
    event_plans = 0
    for name, params in cases.items():
        with CaptureQueriesContext(connection) as captured:
            clients["large"].get("/v1/outcomes/series", params)
        for query in captured.captured_queries:
            sql = query["sql"]
            if "outcomes_" not in sql:
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
                raw = cursor.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            nodes = plan_nodes(plan)
            reads_events = any(n.get("Relation Name") == EVENTS for n in nodes)
            event_plans += reads_events
            rows = sum(n.get("Actual Rows", 0) for n in nodes
                       if n.get("Relation Name") == ROLLUPS)
            kinds = " > ".join(
                f"{n['Node Type']}{' on ' + n['Relation Name'] if n.get('Relation Name') else ''}"
                for n in nodes)
            print(f"  {name}: {kinds}  [{plan['Actual Total Time']:.2f} ms, {rows} rollup rows]"
                  f"{'  <-- reads raw events' if reads_events else ''}")
    print(f"plans reading {EVENTS}: {event_plans} ({'PASS' if not event_plans else 'FAIL'})")

    connection.close()
    if not keep:
        drop_postgres_database(DB_NAME, f"{server}/postgres")
    return [
        Figure(f"90 daily buckets p50, {large:,} events", p50_large, "ms", f"<= {TARGET_MS}"),
        Figure(f"90 daily buckets p50, {large:,} ÷ {small:,} events", ratio, "ratio",
               f"<= {TARGET_RATIO}"),
        Figure("series query plans reading raw events", event_plans, "plans", "== 0"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=91, help="days of history")
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="time against the database a --keep run left (no load)")
    figures = run(**vars(parser.parse_args()))
    sys.exit(1 if missed(figures) else 0)


if __name__ == "__main__":
    main()
