"""Operations Hub at scale (PostgreSQL).

Does the hub stay as fast for a tenant with 100,000 processes as for one with 1,000, and does a
control cost little more than the cheapest durable write the same stack can make?

    .venv/bin/python bench/hub_scale.py [--pg postgres://postgres@127.0.0.1:5432/postgres]
                                        [--big 100000] [--requests 300] [--keep]

`--pg` is a PostgreSQL server URL whose user may create databases (default: $BENCH_PG_URL or
postgres://postgres@127.0.0.1:5432/postgres). The script creates its own database
`agent33_bench_hub` (dropped again unless --keep), migrates it, loads the data with COPY, and
drives the real API stack in-process (DRF test client: authentication, scopes, tenant scope,
selectors, serialisation; no network). It takes about a minute.

Data: 10 tenants: `big` with 100,000 processes, `small` with 1,000, eight others with 10,000
each (181,000 processes), spread evenly over traces, autonomy budgets, improvement intakes and
workflow runs. Half of each tenant's processes started in the last 20 hours (30 % of those are
still active), the other half over the previous 30 days (all finished). So the default hub
(not finished, last 24 h, limit 100) returns 100 rows for both tenants, out of 300 candidates
for `small` and 30,000 for `big`: the worst case for any plan that is not an ordered index range.

Reported:
- hub p50/p95 for `small` and `big`: the default view, `status=completed` and `status=running`;
  target: big/small p50 ratio <= 2.0;
- the plan node types and indexes of every hub query (each index must lead with tenant_id);
- control action (pause/resume via POST /processes/{id}/control) p50 against the p50 of a
  minimal durable write (POST /bench/durable-write: same authentication and scope check, one
  ORM insert in a transaction; bench/auth_urls.py), interleaved in the same run; target:
  ratio <= 3.0. (A control is a locked read, a conditional save, an audit insert and the
  process's detail and history; whoami, the earlier baseline, wrote nothing at all.)

`--big` sets the size of `big` (the eight others get a tenth of it each); `run()` returns the
figures (`make bench-smoke` calls it with a smaller `big`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    Figure,
    drop_postgres_database,
    fresh_postgres_database,
    missed,
)

DB_NAME = "agent33_bench_hub"
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def tenant_sizes(big: int = 100_000) -> dict[str, int]:
    """`big`, `small` (1,000: its default hub view still fills 100 rows) and eight others
    of big / 10 each."""
    return {"big": big, "small": 1_000, **{f"other-{i}": big // 10 for i in range(1, 9)}}


def setup_django(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        LOG_LEVEL="WARNING",
        AGENT33_THROTTLE_RATE="10000000/min",
        DJANGO_SETTINGS_MODULE="bench.settings_auth",  # adds the bench-only durable write
    )
    sys.path.insert(0, str(ROOT))
    importlib.import_module("agent33.wsgi")  # set up as a server process is
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- data -------------------------------------------------------------------------------


def _statuses():
    from operations import choices

    return {
        "trace": (choices.TRACE_ACTIVE, sorted(choices.TRACE_TERMINAL)),
        "budget": (choices.BUDGET_ACTIVE, sorted(choices.BUDGET_TERMINAL)),
        "intake": (choices.INTAKE_ACTIVE, sorted(choices.INTAKE_TERMINAL)),
        "wfrun": (choices.WORKFLOW_ACTIVE, sorted(choices.WORKFLOW_TERMINAL)),
    }


COLUMNS = {
    "trace": ("operations_trace", "id, tenant_id, task_id, agent_id, session_id, run_id, status, "
              "failure_code, failure_message, started_at, completed_at, updated_at"),
    "budget": ("operations_autonomybudget", "id, tenant_id, task_id, agent_id, limits, "
               "approved_by, expires_at, status, started_at, updated_at"),
    "intake": ("operations_improvementintake", "id, tenant_id, title, summary, source, "
               "research_type, urgency, status, decline_key, started_at, updated_at"),
    "wfrun": ("operations_workflowrun", "id, tenant_id, workflow_name, trigger_type, status, "
              "started_at, duration_ms, error, job_id, updated_at"),
}


def _row(kind: str, tenant: str, n: int, status: str, started: datetime) -> tuple:
    pk = f"{kind}-{secrets.token_hex(16)}"
    if kind == "trace":
        done = None if status == "running" else started + timedelta(seconds=30)
        return (pk, tenant, f"task-{n}", f"agent-{n % 50}", f"s-{n}", f"r-{n}", status, "", "",
                started, done, started)
    if kind == "budget":
        return (pk, tenant, f"task-{n}", f"agent-{n % 50}", '{"max_tool_calls": 10}', "", None,
                status, started, started)
    if kind == "intake":
        return (pk, tenant, f"Improvement {n}", "", "bench", "internal", "medium", status, "",
                started, started)
    return (pk, tenant, f"workflow-{n % 20}", "schedule", status, started,
            None if status in ("queued", "running", "paused") else 1000, "", f"job-{n}", started)


def load_data(now: datetime, sizes: dict[str, int]) -> None:
    from django.db import connection

    from agent33.tenancy.models import Tenant

    Tenant.objects.bulk_create([Tenant(slug=slug, name=slug) for slug in sizes])
    statuses = _statuses()
    rng = random.Random(33)
    started_loading = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for kind, (table, columns) in COLUMNS.items():
            active, final = statuses[kind]
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for tenant, size in sizes.items():
                    for n in range(size // 4):
                        if n % 2 == 0:  # recent half: 30 % still active
                            started = now - timedelta(seconds=rng.uniform(60, 20 * 3600))
                            pool = active if rng.random() < 0.3 else final
                        else:  # history: finished, 1..31 days ago
                            started = now - timedelta(days=rng.uniform(1.05, 31))
                            pool = final
                        copy.write_row(_row(kind, tenant, n, rng.choice(pool), started))
        cursor.execute("ANALYZE")
    total = sum(sizes.values())
    print(f"loaded {total:,} processes in {time.perf_counter() - started_loading:.1f} s "
          f"({len(sizes)} tenants)")


# --- measuring --------------------------------------------------------------------------


def client_for(tenant_slug: str | None, scopes: list[str]):
    from rest_framework.test import APIClient

    from agent33.tenancy.models import Tenant
    from agent33.tenancy.services import token_issue

    tenant = Tenant.objects.get(slug=tenant_slug) if tenant_slug else None
    issued = token_issue(tenant=tenant, scopes=scopes, name=f"bench {tenant_slug}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    return client


def timed(call) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"unexpected {response.status_code}: {response.content[:300]!r}")
    return elapsed


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def measure_hub(clients: dict, params: dict, requests: int) -> dict[str, tuple]:
    """p50/p95 per tenant; the tenants' requests alternate, so load drift hits both alike."""
    samples: dict[str, list[float]] = {slug: [] for slug in clients}
    rows = {}
    for slug, client in clients.items():
        for _ in range(20):
            client.get("/v1/operations/hub", params)
        rows[slug] = len(client.get("/v1/operations/hub", params).json()["processes"])
    for _ in range(requests):
        for slug, client in clients.items():
            samples[slug].append(timed(lambda c=client: c.get("/v1/operations/hub", params)))
    return {slug: (*percentiles(samples[slug]), rows[slug]) for slug in clients}


def _plan_nodes(node: dict) -> list[tuple[str, str | None]]:
    found = [(node["Node Type"], node.get("Index Name"))]
    for child in node.get("Plans", []):
        found += _plan_nodes(child)
    return found


def explain_hub(client, params: dict) -> list[str]:
    """EXPLAIN every query the hub ran; return problems (indexes not led by tenant_id)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get("/v1/operations/hub", params)
    problems = []
    hub_queries = [q["sql"] for q in captured.captured_queries if '"operations_' in q["sql"]]
    print(f"  hub {params or '(defaults)'}: {len(captured.captured_queries)} queries "
          f"({len(hub_queries)} on operations tables)")
    with connection.cursor() as cursor:
        for sql in hub_queries:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            nodes = _plan_nodes(plan[0]["Plan"])
            table = sql.split('FROM "', 1)[1].split('"', 1)[0]
            described = " > ".join(f"{t}({i})" if i else t for t, i in nodes)
            print(f"    {table:<30} {described}")
            for node_type, index in nodes:
                if node_type == "Seq Scan":
                    problems.append(f"{table}: sequential scan")
                if index:
                    cursor.execute(
                        "SELECT a.attname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
                        "WHERE c.relname = %s",
                        [index],
                    )
                    lead = cursor.fetchone()[0]
                    if lead != "tenant_id":
                        problems.append(f"{table}: index {index} leads with {lead}")
    return problems


def measure_control_vs_durable_write(executor, count: int) -> tuple[float, float]:
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from operations.models import WorkflowRun

    with tenant_scope(Tenant.objects.get(slug="big")):
        run_ids = list(
            WorkflowRun.objects.filter(status="running").values_list("id", flat=True)[:count]
        )
    control_samples, write_samples = [], []

    def control(run_id, action):
        return executor.post(
            f"/v1/operations/processes/{run_id}/control",
            {"action": action, "reason": "bench"},
            format="json",
        )

    def durable_write():
        return executor.post("/bench/durable-write", {}, format="json")

    for _ in range(20):
        durable_write()
    for action in ("pause", "resume"):
        for run_id in run_ids:
            write_samples.append(timed(durable_write))
            control_samples.append(
                timed(lambda run_id=run_id, action=action: control(run_id, action))
            )
    return percentiles(control_samples)[0], percentiles(write_samples)[0]


def run(
    *,
    pg: str = PG_URL,
    big: int = 100_000,
    requests: int = 300,
    controls: int = 200,
    keep: bool = False,
) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs it with a smaller `big`
    tenant). Sets up Django in this process, so run it once per process."""
    sizes = tenant_sizes(big)
    started = time.perf_counter()
    setup_django(fresh_postgres_database(DB_NAME, pg))
    failures = []
    figures: list[Figure] = []
    try:
        now = datetime.now(UTC)
        load_data(now, sizes)
        read = ["workflows:read"]
        clients = {slug: client_for(slug, read) for slug in ("small", "big")}

        print("\nhub latency (ms)            rows    p50     p95")
        results = {}
        for label, params in (("default", {}), ("status=completed", {"status": "completed"}),
                              ("status=running", {"status": "running"})):
            measured = measure_hub(clients, params, requests)
            for slug in ("small", "big"):
                p50, p95, rows = measured[slug]
                results[(label, slug)] = p50
                print(f"  {slug:<6} {label:<19} {rows:>4} {p50:>7.2f} {p95:>7.2f}")
        print("\nbig/small p50 ratio (target <= 2.0)")
        for label in ("default", "status=completed", "status=running"):
            ratio = results[(label, "big")] / results[(label, "small")]
            verdict = "ok" if ratio <= 2.0 else "OVER TARGET"
            print(f"  {label:<19} {ratio:.2f}  {verdict}")
            if ratio > 2.0:
                failures.append(f"hub {label} ratio {ratio:.2f}")
            figures.append(Figure(f"hub {label}: big ÷ small tenant p50", ratio, "ratio",
                                  "<= 2.0"))

        operator = {"operator": client_for(None, read)}
        p50, p95, rows = measure_hub(operator, {}, max(20, requests // 5))["operator"]
        print(f"  (info) operator token, all {len(sizes)} tenants, default view: "
              f"{rows} rows, p50 {p50:.2f} ms, p95 {p95:.2f} ms")

        print("\nquery plans for tenant 'big' (node types, index names)")
        problems = []
        for params in ({}, {"status": "completed"}):
            problems += explain_hub(clients["big"], params)
        failures += problems
        figures.append(Figure("hub plans: seq scans, indexes not led by tenant_id",
                              len(problems), "problems", "== 0"))

        executor = client_for("big", ["workflows:execute"])
        control_p50, write_p50 = measure_control_vs_durable_write(executor, controls)
        ratio = control_p50 / write_p50
        print(f"\ncontrol p50 {control_p50:.2f} ms, minimal durable write p50 {write_p50:.2f} ms, "
              f"ratio {ratio:.2f} (target <= 3.0) {'ok' if ratio <= 3.0 else 'OVER TARGET'}")
        if ratio > 3.0:
            failures.append(f"control/durable-write ratio {ratio:.2f}")
        figures.append(Figure("control ÷ minimal durable write p50", ratio, "ratio", "<= 3.0"))
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            drop_postgres_database(DB_NAME, pg)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; "
          + ("all targets met" if not failures else "FAILED: " + "; ".join(failures)))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--big", type=int, default=100_000, help="processes of tenant 'big'")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--controls", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return 1 if missed(run(**vars(parser.parse_args()))) else 0


if __name__ == "__main__":
    sys.exit(main())
