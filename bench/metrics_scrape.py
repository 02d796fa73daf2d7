"""GET /metrics as data grows, and what the metrics middleware costs a request (PostgreSQL).

    .venv/bin/python bench/metrics_scrape.py [--rounds 300] [--requests 3000] [--keep]

Two scratch databases, each migrated (which installs the row-count triggers) and loaded with
psycopg COPY across 10 tenants:
- `small`: 1,000 processes and 10,000 outcome events;
- `large`: 100,000 processes and 1,000,000 outcome events.
Processes are spread evenly over traces, budgets, intakes, workflow runs and multimodal
requests in every status (the triggers count the COPY as it goes); the events' per-key
counts are built by `manage.py outcomes_rebuild_counts`, as the services would have kept
them.

Reported, from one run:
1. scrape p50/p95 against a gunicorn (2 workers, PROMETHEUS_MULTIPROC_DIR) per database,
   scrapes alternating between the two; target: large/small p50 ratio <= 2;
2. on `large`: counting the processes when asked (GROUP BY status over each table) vs
   reading the trigger-kept counts, and the plan of every query a scrape runs;
3. GET /v1/auth/whoami p50/p95 on a gunicorn with the metrics middleware and one without
   (bench/settings_nometrics.py), requests alternating; target: with ÷ without p50 <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    PG_ADMIN_URL,
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
    summarize,
)

SIZES = {"small": (1_000, 10_000), "large": (100_000, 1_000_000)}
TENANTS = [f"tenant-{i}" for i in range(10)]
NOW = datetime.now(UTC)

PROCESS_TABLES = {
    "operations_trace": (
        "id, tenant_id, task_id, agent_id, session_id, run_id, status, failure_code, "
        "failure_message, started_at, completed_at, updated_at",
        ["running", "completed", "failed", "timeout", "cancelled", "escalated"],
        lambda pk, t, s, at: (pk, t, "task", "agent", "", "", s, "", "", at, None, at),
    ),
    "operations_autonomybudget": (
        "id, tenant_id, task_id, agent_id, limits, approved_by, expires_at, status, "
        "started_at, updated_at",
        ["draft", "pending_approval", "active", "suspended", "rejected", "expired", "completed"],
        lambda pk, t, s, at: (pk, t, "task", "agent", "{}", "", None, s, at, at),
    ),
    "operations_improvementintake": (
        "id, tenant_id, title, summary, source, research_type, urgency, status, decline_key, "
        "started_at, updated_at",
        ["submitted", "triaged", "analyzing", "accepted", "deferred", "rejected", "tracked"],
        lambda pk, t, s, at: (pk, t, "idea", "", "bench", "internal", "medium", s,
                              f"success_rate:{pk}" if pk.endswith("0") else "", at, at),
    ),
    "operations_workflowrun": (
        "id, tenant_id, workflow_name, trigger_type, status, started_at, duration_ms, error, "
        "job_id, updated_at",
        ["queued", "running", "paused", "completed", "failed", "cancelled"],
        lambda pk, t, s, at: (pk, t, "nightly", "schedule", s, at, None, "", "", at),
    ),
    "multimodal_multimodalrequest": (
        "id, tenant_id, modality, state, provider, input_text, requested_timeout_seconds, "
        "requested_by, error_message, attempts, claim_token, created_by, cancelled_by, "
        "cancel_reason, created_at, updated_at, options, estimated_usage, reserved_nano_usd",
        ["pending", "processing", "completed", "failed", "cancelled"],
        lambda pk, t, s, at: (pk, t, "text_to_speech", s, "espeak", "hi", 60, "", "", 0, "",
                              "", "", "", at, at, "{}", "{}", 0),
    ),
}
EVENT_COLUMNS = ("id, tenant_id, domain, event_type, metric_type, value, occurred_at, "
                 "metadata, created_at")
METRICS = ("success_rate", "quality_score", "latency_ms", "cost_usd")


def pg_url(database_url: str) -> str:
    return database_url.replace("postgres://", "postgresql://", 1)


def load(database_url: str, processes: int, events: int) -> float:
    rng = random.Random(17)
    started = time.perf_counter()
    with psycopg.connect(pg_url(database_url)) as conn:
        with conn.cursor() as cursor:
            for slug in TENANTS:
                cursor.execute("INSERT INTO tenancy_tenant (slug, name, is_active, created_at) "
                               "VALUES (%s, %s, true, now())", (slug, slug))
            per_table = processes // len(PROCESS_TABLES)
            for table, (columns, statuses, row) in PROCESS_TABLES.items():
                prefix = table.split("_")[-1][:6]
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for n in range(per_table):
                        at = NOW - timedelta(seconds=rng.uniform(60, 30 * 86400))
                        copy.write_row(row(f"{prefix}-{secrets.token_hex(16)}",
                                           TENANTS[n % len(TENANTS)], statuses[n % len(statuses)],
                                           at))
            with cursor.copy(f"COPY outcomes_outcomeevent ({EVENT_COLUMNS}) FROM STDIN") as copy:
                for n in range(events):
                    metric = METRICS[n % 4]
                    copy.write_row((
                        f"outcome-{secrets.token_hex(16)}", TENANTS[n % len(TENANTS)],
                        f"domain-{rng.randrange(6)}", f"type-{rng.randrange(4)}", metric,
                        rng.random(), NOW - timedelta(seconds=rng.randrange(86400 * 365)),
                        '{"agent":"bench"}', NOW,
                    ))
        conn.commit()
    with psycopg.connect(pg_url(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def scrape_rounds(servers: dict[str, tuple[str, str]], rounds: int) -> dict[str, list[float]]:
    """`servers`: name → (base URL, operator token). Scrapes alternate between the servers,
    so drift in the machine's load hits both alike."""
    samples: dict[str, list[float]] = {name: [] for name in servers}
    with httpx.Client(timeout=30) as client:
        def scrape(name: str) -> float:
            url, token = servers[name]
            started = time.perf_counter()
            response = client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{name}: /metrics → {response.status_code}")
            return elapsed

        for name in servers:
            for _ in range(20):
                scrape(name)
        for _ in range(rounds):
            for name in servers:
                samples[name].append(scrape(name))
    return samples


def processes_line(text: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("agent33_processes{"))


def explain_scrape(database_url: str) -> None:
    """The scrape's queries (as the collectors send them) and the alternative they avoid."""
    queries = {
        "processes (trigger-kept counts)": 'SELECT process_type, status, SUM("count") FROM '
        "operations_processcount GROUP BY 1, 2",
        "multimodal requests (trigger-kept)": 'SELECT modality, provider, state, SUM("count") '
        "FROM multimodal_requestcount GROUP BY 1, 2, 3",
        "controls (trigger-kept)": 'SELECT process_type, action, SUM("count") FROM '
        "operations_controlcount GROUP BY 1, 2",
        "outcome events (service-kept)": 'SELECT metric_type, SUM("count") FROM '
        "outcomes_outcomecount GROUP BY 1",
        "intakes opened by declines": "SELECT COUNT(*) FROM operations_improvementintake "
        "WHERE NOT (decline_key = '')",
    }
    counted_when_asked = " UNION ALL ".join(
        f"SELECT '{table}', {'state' if 'multimodal' in table else 'status'}, COUNT(*) "
        f"FROM {table} GROUP BY 2" for table in PROCESS_TABLES
    )
    with psycopg.connect(pg_url(database_url)) as conn:
        print("\nquery plans on 'large' (node types, index names)")
        for label, sql in queries.items():
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            print(f"  {label:<36} {' > '.join(_nodes(plan[0]['Plan']))}")

        def timed(sql: str) -> float:
            runs = []
            for _ in range(15):
                started = time.perf_counter()
                conn.execute(sql).fetchall()
                runs.append(time.perf_counter() - started)
            return sorted(runs)[len(runs) // 2] * 1000

        kept = timed(queries["processes (trigger-kept counts)"]) + timed(
            queries["multimodal requests (trigger-kept)"])
        counted = timed(counted_when_asked)
        print(f"\nprocesses by status on 'large': counted when asked {counted:.2f} ms, "
              f"trigger-kept counts {kept:.2f} ms ({counted / kept:.0f}x)")


def _nodes(node: dict) -> list[str]:
    text = node["Node Type"] + (f"({node['Index Name']})" if node.get("Index Name") else "")
    return [text] + [n for child in node.get("Plans", []) for n in _nodes(child)]


def middleware_overhead(env_with: dict, env_without: dict, token: str,
                        requests: int) -> tuple[dict, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    with (gunicorn(env_with) as with_url, gunicorn(env_without) as without_url,
          httpx.Client(headers=headers) as client):
        for _ in range(200):
            client.get(f"{with_url}/v1/auth/whoami")
            client.get(f"{without_url}/v1/auth/whoami")
        measured: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(requests):
            for name, url in (("with", with_url), ("without", without_url)):
                started = time.perf_counter()
                response = client.get(f"{url}/v1/auth/whoami")
                measured[name].append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
    return summarize(measured["with"]), summarize(measured["without"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="scrapes per database")
    parser.add_argument("--requests", type=int, default=3000, help="whoami per server")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args()
    started = time.perf_counter()
    failures: list[str] = []
    urls: dict[str, str] = {}
    envs: dict[str, dict] = {}
    try:
        for name, (processes, events) in SIZES.items():
            url = fresh_postgres_database(f"agent33_bench_metrics_{name}", PG_ADMIN_URL)
            envs[name] = bench_env(
                url, PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix=f"metrics-{name}-"),
                AGENT33_LOG_FORMAT="json",
            )
            manage(envs[name], "migrate", "--noinput")
            seconds = load(url, processes, events)
            manage(envs[name], "outcomes_rebuild_counts")
            print(f"{name}: {processes:,} processes, {events:,} events loaded in {seconds:.1f} s")
            urls[name] = url
        tokens = {name: manage(env, "issue_token", "--all-tenants", "--scopes", "metrics:read")
                  .strip().splitlines()[-1] for name, env in envs.items()}

        with (gunicorn(envs["small"], workers=2) as small,
              gunicorn(envs["large"], workers=2) as large):
            servers = {"small": small, "large": large}
            for name, server in servers.items():
                text = httpx.get(f"{server}/metrics",
                                 headers={"Authorization": f"Bearer {tokens[name]}"}).text
                print(f"  {name}: /metrics reports {processes_line(text):,} processes")
            measured = scrape_rounds(
                {name: (server, tokens[name]) for name, server in servers.items()}, args.rounds
            )
        small_s, large_s = summarize(measured["small"]), summarize(measured["large"])
        ratio = large_s["p50_ms"] / small_s["p50_ms"]
        print("\nscrape of GET /metrics (gunicorn, 2 workers)   p50      p95")
        print(f"  small (1,000 processes, 10,000 events)    {small_s['p50_ms']:6.2f}  "
              f"{small_s['p95_ms']:7.2f} ms")
        print(f"  large (100,000 processes, 1,000,000 events) {large_s['p50_ms']:4.2f}  "
              f"{large_s['p95_ms']:7.2f} ms")
        print(f"  large/small p50 ratio {ratio:.2f} (target <= 2) "
              + ("ok" if ratio <= 2 else "OVER TARGET"))
        if ratio > 2:
            failures.append(f"scrape ratio {ratio:.2f}")
        explain_scrape(urls["large"])

        whoami_token = manage(envs["small"], "issue_token", "--tenant", "tenant-0", "--scopes",
                              "workflows:read").strip().splitlines()[-1]
        without = {**envs["small"], "DJANGO_SETTINGS_MODULE": "bench.settings_nometrics",
                   "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="metrics-without-")}
        with_s, without_s = middleware_overhead(envs["small"], without, whoami_token,
                                                args.requests)
        overhead = with_s["p50_ms"] / without_s["p50_ms"]
        print("\nGET /v1/auth/whoami (gunicorn, 1 worker)       p50      p95")
        print(f"  without the metrics middleware              {without_s['p50_ms']:6.3f}  "
              f"{without_s['p95_ms']:7.3f} ms")
        print(f"  with it                                     {with_s['p50_ms']:6.3f}  "
              f"{with_s['p95_ms']:7.3f} ms")
        print(f"  with/without p50 ratio {overhead:.3f} (target <= 1.1) "
              + ("ok" if overhead <= 1.1 else "OVER TARGET"))
        if overhead > 1.1:
            failures.append(f"middleware overhead {overhead:.3f}")
    finally:
        if not args.keep:
            for name in SIZES:
                drop_postgres_database(f"agent33_bench_metrics_{name}", PG_ADMIN_URL)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; "
          + ("all targets met" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
