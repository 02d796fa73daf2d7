"""Batches: 10,000 running workflow runs paused by one batch on the worker (DESIGN §8.4).

Run: `.venv/bin/python bench/batches.py` (PostgreSQL on 127.0.0.1; creates and drops its own
database), `--smoke` for 1,000 runs. Gunicorn with 2 sync workers (as `docker compose` runs
it) and one real `manage.py worker`.

1. Tenant "acme" has N running workflow runs (10,000; `--smoke` 1,000); tenant "other" has
   200. One `POST /v1/operations/batches` pauses all of acme's. Prints items/s: matched ÷
   (finished_at - started_at) of the batch as it reports itself (target ≥ 200), and the
   wall time from the POST's answer to `completed` seen by polling.
2. Tenant "other" reads `GET /v1/operations/hub` back to back, alone (before and after the
   batch), and while the batch runs. Prints its p50/p95 in each and the p95 ratio
   during ÷ alone (target ≤ 2): a batch's chunks (200 items per transaction) must not
   starve another tenant's reads.

Checks that every run ended paused with one history row each (path batch) before it prints.
`run()` returns the figures.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    Figure,
    LeanClient,
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    job_worker,
    manage,
    missed,
    percentile,
)

DB_NAME = "agent33_bench_batches"
TARGET_RATE = 200.0
TARGET_RATIO = 2.0
ALONE_SECONDS = 8.0

LOAD = """
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from operations.models import WorkflowRun
for slug, count in (("acme", {acme}), ("other", 200)):
    tenant = Tenant.objects.get(pk=slug)
    with tenant_scope(tenant):
        WorkflowRun.objects.bulk_create(
            [WorkflowRun(tenant=tenant, workflow_name=f"{{slug}}-{{n}}", status="running")
             for n in range(count)], batch_size=2000)
"""

CHECK = """
from collections import Counter
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from operations.models import StatusChange, WorkflowRun
with tenant_scope(Tenant.objects.get(pk="acme")):
    print(dict(Counter(WorkflowRun.objects.values_list("status", flat=True))))
    print(StatusChange.objects.filter(path="batch").count())
with tenant_scope(Tenant.objects.get(pk="other")):
    print(WorkflowRun.objects.filter(status="running").count())
"""


def token(env: dict[str, str], tenant: str, scopes: str) -> str:
    return manage(env, "issue_token", "--tenant", tenant, "--scopes", scopes
                  ).strip().splitlines()[-1]


def hub_reads(client: LeanClient, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        status, body = client.request("GET", "/v1/operations/hub?include=workflows")
        samples.append(time.perf_counter() - start)
        if status != 200:
            raise SystemExit(f"hub → {status}: {body[:300]!r}")


def read_for(client: LeanClient, seconds: float) -> list[float]:
    samples: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=hub_reads, args=(client, stop, samples))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return samples


def run(*, runs: int) -> list[Figure]:
    database_url = fresh_postgres_database(DB_NAME)
    env = bench_env(database_url)
    try:
        manage(env, "migrate", "-v0")
        for slug in ("acme", "other"):
            manage(env, "create_tenant", slug)
        acme = token(env, "acme", "workflows:execute,workflows:read")
        other = token(env, "other", "workflows:read")
        manage(env, "shell", "-c", LOAD.format(acme=runs))
        with gunicorn(env, workers=2) as url, job_worker(env, concurrency=1):
            reader = LeanClient.for_url(url, other)
            read_for(reader, 1.0)  # warm both workers
            alone = read_for(reader, ALONE_SECONDS / 2)

            during: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=hub_reads, args=(reader, stop, during))
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {acme}"}) as http:
                made = http.post("/v1/operations/batches", json={
                    "action": "pause", "filter": {"include": "workflows"}, "reason": "bench"})
                if made.status_code != 202 or made.json()["matched"] != runs:
                    raise SystemExit(f"batch → {made.status_code}: {made.text[:300]}")
                posted = time.perf_counter()
                batch_id = made.json()["id"]
                thread.start()
                while True:
                    batch = http.get(f"/v1/operations/batches/{batch_id}").json()
                    if batch["state"] not in ("queued", "running"):
                        break
                    time.sleep(0.2)
                wall = time.perf_counter() - posted
                stop.set()
                thread.join()
            alone += read_for(reader, ALONE_SECONDS / 2)
        status_counts, history, others_running = manage(env, "shell", "-c", CHECK
                                                        ).strip().splitlines()[-3:]
        if (batch["state"], batch["done"]) != ("completed", runs) or history != str(runs) \
                or status_counts != str({"paused": runs}) or others_running != "200":
            raise SystemExit(f"wrong result: {batch} {status_counts} {history} "
                             f"{others_running}")
    finally:
        drop_postgres_database(DB_NAME)

    from datetime import datetime

    started = datetime.fromisoformat(batch["started_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(batch["finished_at"].replace("Z", "+00:00"))
    rate = runs / max((finished - started).total_seconds(), 1e-6)
    alone_p95, during_p95 = percentile(alone, 95), percentile(during, 95)
    print(f"batch of {runs:,} pauses: {rate:,.0f} items/s on the worker "
          f"({(finished - started).total_seconds():.2f} s), {wall:.2f} s from the 202 to "
          f"completed seen by polling")
    print(f"other tenant's hub, alone:  p50 {percentile(alone, 50) * 1000:.1f} ms, "
          f"p95 {alone_p95 * 1000:.1f} ms ({len(alone)} reads)")
    print(f"other tenant's hub, during: p50 {percentile(during, 50) * 1000:.1f} ms, "
          f"p95 {during_p95 * 1000:.1f} ms ({len(during)} reads)")
    ratio = during_p95 / alone_p95
    print(f"p95 during ÷ alone: {ratio:.2f}")
    return [
        Figure("batch_items_per_second", rate, "items/s", f">= {TARGET_RATE}"),
        Figure("batch_neighbour_hub_p95_ratio", ratio, "ratio", f"<= {TARGET_RATIO}"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1,000 runs instead of 10,000")
    args = parser.parse_args()
    figures = run(runs=1_000 if args.smoke else 10_000)
    for figure in missed(figures):
        print(f"MISSED {figure.metric}: {figure.value:.2f} (target {figure.target})")
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
