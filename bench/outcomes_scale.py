"""Outcome reads at scale: trend and dashboard latency for a tenant with 10,000 events and
for one with 1,000,000, in one table that also holds other tenants' rows.

Usage (PostgreSQL reachable as postgres@127.0.0.1:5432, the default):

    .venv/bin/python bench/outcomes_scale.py [--large 1000000] [--small 10000]
        [--others 4 --other-rows 100000] [--requests 150] [--server postgres://...] [--keep]

What it does, against a PostgreSQL database it creates for itself
(`agent33_bench_outcomes_scale`, dropped again unless --keep):

1. migrates it (manage.py) and creates the tenants and an `outcomes:read` token each;
2. loads every tenant's events with psycopg COPY, rows of all tenants interleaved at random
   (secondary indexes are dropped for the load and rebuilt after it, as a bulk load would),
   then rebuilds the summary counts and the trend snapshots
   (outcomes.services.outcome_counts_rebuild) and ANALYZEs; every tenant's events are spread
   over 200 domains;
3. times each endpoint for both tenants in pairs (which goes first drawn at random per
   pair), set up as a gunicorn worker is (agent33.wsgi), through the whole Django
   stack in-process (django.test.Client with a bearer token: middleware, authentication,
   selectors, serialisation; no network), and prints p50/p95 and the 1M/10k ratios
   (target: <= 2.0); "dashboard" includes the per-domain table (50 of the 200 domains),
   "dashboard 200 domains" all of them (`domains_limit=500`);
4. runs EXPLAIN ANALYZE on every query the large tenant's requests issue and prints the
   plan's node types; it fails if any plan has a sequential scan or a sort on the events
   table.

`run()` returns the figures (`make bench-smoke` calls it at a smaller N).
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

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    Figure,
    drop_postgres_database,
    fresh_postgres_database,
    missed,
)

DB_NAME = "agent33_bench_outcomes_scale"
TABLE = "outcomes_outcomeevent"
COLUMNS = (
    "id, tenant_id, domain, event_type, metric_type, value, occurred_at, metadata, created_at"
)
METRICS = ("success_rate", "quality_score", "latency_ms", "cost_usd")
# 200 domains per tenant, so the dashboard's per-domain table has real work to do.
DOMAINS = tuple(f"domain-{n:03}" for n in range(200))
EVENT_TYPES = ("task_completed", "review", "handoff", "retry")
TARGET_RATIO = 2.0


def load_events(database_url: str, sizes: dict[str, int]) -> float:
    """COPY every tenant's events, interleaved, with the secondary indexes rebuilt after."""
    rng = random.Random(7)
    owners = [slug for slug, count in sizes.items() for _ in range(count)]
    rng.shuffle(owners)
    end = datetime(2026, 6, 30, tzinfo=UTC)
    year = 365 * 24 * 3600
    created = datetime.now(UTC)
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
            "AND indexname NOT LIKE %s",
            (TABLE, "%_pkey"),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with conn.cursor() as cursor, cursor.copy(f"COPY {TABLE} ({COLUMNS}) FROM STDIN") as copy:
            write_row = copy.write_row
            for i, owner in enumerate(owners):
                metric = METRICS[i % 4]
                write_row(
                    (
                        f"outcome-{secrets.token_hex(16)}",
                        owner,
                        DOMAINS[rng.randrange(len(DOMAINS))],
                        EVENT_TYPES[rng.randrange(4)],
                        metric,
                        rng.random() * (1000.0 if metric == "latency_ms" else 1.0),
                        end - timedelta(seconds=rng.randrange(year)),
                        '{"agent":"bench"}',
                        created,
                    )
                )
        conn.commit()  # the deferred tenant FK checks run here, before the index builds
        for _, definition in indexes:
            conn.execute(definition)
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - started


def plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def describe(node: dict) -> str:
    text = node["Node Type"]
    if node.get("Scan Direction") == "Backward":
        text += " Backward"
    if node.get("Index Name"):
        text += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        text += f" on {node['Relation Name']}"
    return text


def run(
    *,
    large: int = 1_000_000,
    small: int = 10_000,
    others: int = 4,
    other_rows: int = 100_000,
    requests: int = 150,
    server: str = "postgres://postgres@127.0.0.1:5432",
    keep: bool = False,
) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs it at a smaller N).
    Sets up Django in this process, so run it once per process."""
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
    print(f"database {DB_NAME}: migrating ...", flush=True)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if done.returncode:
        sys.exit(done.stderr)

    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from agent33.tenancy.services import tenant_create, token_issue
    from outcomes.services import outcome_counts_rebuild

    sizes = {"large": large, "small": small}
    sizes.update({f"other-{n}": other_rows for n in range(1, others + 1)})
    tokens = {}
    for slug in sizes:
        tenant = tenant_create(slug=slug)
        tokens[slug] = token_issue(tenant=tenant, scopes=["outcomes:read"]).plaintext
    total = sum(sizes.values())
    print(f"loading {total:,} events ({', '.join(f'{k}: {v:,}' for k, v in sizes.items())}) ...",
          flush=True)
    seconds = load_events(database_url, sizes)
    print(f"loaded in {seconds:.1f} s ({total / seconds:,.0f} rows/s incl. index builds)")
    started = time.perf_counter()
    rows = outcome_counts_rebuild()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outcomes_outcomecount, outcomes_outcometrendsnapshot")
    print(f"summary counts and trend snapshots rebuilt: {rows} count rows in "
          f"{time.perf_counter() - started:.1f} s\n", flush=True)
    # Set up as a server process is (agent33/wsgi.py: the start-up heap frozen out of the
    # collector's reach), so full collections cost what they cost in gunicorn.
    importlib.import_module("agent33.wsgi")

    cases = {
        "trend w=20": lambda i: f"/v1/outcomes/trends/{METRICS[i % 4]}",
        "trend w=20 domain": lambda i: (
            f"/v1/outcomes/trends/{METRICS[i % 4]}?domain={DOMAINS[i % len(DOMAINS)]}"
        ),
        "trend w=1000": lambda i: f"/v1/outcomes/trends/{METRICS[i % 4]}?window=1000",
        "dashboard": lambda i: "/v1/outcomes/dashboard",
        "dashboard domain": lambda i: (
            f"/v1/outcomes/dashboard?domain={DOMAINS[i % len(DOMAINS)]}"
        ),
        "dashboard 200 domains": lambda i: "/v1/outcomes/dashboard?domains_limit=500",
        "events list": lambda i: "/v1/outcomes/events?limit=50",
    }
    clients = {}
    for slug in ("small", "large"):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {tokens[slug]}")
        clients[slug] = client

    def timed(client: Client, path: str) -> float:
        start = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            sys.exit(f"{path}: {response.status_code} {response.content[:300]!r}")
        return elapsed * 1000

    results: dict[str, dict[str, list[float]]] = {}
    order_rng = random.Random(11)
    for name, path_for in cases.items():
        samples: dict[str, list[float]] = {"small": [], "large": []}
        for i in range(15):  # warm-up: caches, connection, imports
            for slug in samples:
                timed(clients[slug], path_for(i))
        for i in range(requests):
            # Which tenant goes first is drawn per pair: with a fixed alternation the pairs
            # allocate in a fixed cycle, and every full garbage collection fell on one side.
            order = ("small", "large") if order_rng.random() < 0.5 else ("large", "small")
            for slug in order:
                samples[slug].append(timed(clients[slug], path_for(i)))
        results[name] = samples

    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    print(f"latency in ms over {requests} requests each "
          f"(small = {small:,} events, large = {large:,})")
    print(f"{'case':20} {'p50 small':>10} {'p50 large':>10} {'ratio':>6}   "
          f"{'p95 small':>10} {'p95 large':>10} {'ratio':>6}")
    worst = 0.0
    for name, samples in results.items():
        p50s, p50l = pct(samples["small"], 50), pct(samples["large"], 50)
        p95s, p95l = pct(samples["small"], 95), pct(samples["large"], 95)
        worst = max(worst, p50l / p50s, p95l / p95s)
        print(f"{name:20} {p50s:10.2f} {p50l:10.2f} {p50l / p50s:6.2f}   "
              f"{p95s:10.2f} {p95l:10.2f} {p95l / p95s:6.2f}")
    verdict = "PASS" if worst <= TARGET_RATIO else "FAIL"
    print(f"worst large/small ratio: {worst:.2f} (target <= {TARGET_RATIO}: {verdict})\n")

    print("EXPLAIN ANALYZE of every query the large tenant's requests issue:")
    bad_plans = 0
    for name, path_for in cases.items():
        with CaptureQueriesContext(connection) as captured:
            clients["large"].get(path_for(1))
        print(f"  {name} ({path_for(1)}): {len(captured.captured_queries)} queries")
        for query in captured.captured_queries:
            sql = query["sql"]
            if "outcomes_" not in sql:
                print("    - (authentication / tenant lookup, not an outcomes table)")
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
                raw = cursor.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            nodes = plan_nodes(plan)
            touches_events = any(n.get("Relation Name") == TABLE for n in nodes)
            problems = [
                describe(n) for n in nodes
                if (n["Node Type"] == "Seq Scan" and n.get("Relation Name") == TABLE)
                or (touches_events and n["Node Type"] in ("Sort", "Incremental Sort"))
            ]
            bad_plans += bool(problems)
            verdict = f"  <-- {', '.join(problems)}" if problems else ""
            print(f"    - {' > '.join(describe(n) for n in nodes)}"
                  f"  [{plan['Actual Total Time']:.2f} ms]{verdict}")
    print(f"\nplans with a sequential scan or sort of {TABLE}: {bad_plans} "
          f"({'PASS' if bad_plans == 0 else 'FAIL'})")

    connection.close()
    if not keep:
        drop_postgres_database(DB_NAME, f"{server}/postgres")
    return [
        Figure(f"worst p50/p95 ratio, {large:,} ÷ {small:,} events", worst, "ratio",
               f"<= {TARGET_RATIO}"),
        Figure("query plans with a sequential scan or sort of the events", bad_plans, "plans",
               "== 0"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=4, help="other tenants")
    parser.add_argument("--other-rows", type=int, default=100_000, help="events per other")
    parser.add_argument("--requests", type=int, default=150, help="timed requests per case")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    figures = run(**vars(parser.parse_args()))
    sys.exit(1 if missed(figures) else 0)


if __name__ == "__main__":
    main()
