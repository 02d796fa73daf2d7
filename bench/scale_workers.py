"""Does the service scale out? A mixed workload against gunicorn with 1 and then 2 workers.

Run: `.venv/bin/python bench/scale_workers.py` (PostgreSQL on 127.0.0.1; creates and drops
its own database). BENCH_SECONDS (default 20) per configuration, BENCH_CONCURRENCY (default 8)
concurrent clients.

The workload is what an operations console and agent runtimes send at once: 50 % hub reads,
40 % outcome event writes, 10 % controls (pause/resume of workflow runs, each client on its
own runs so no control loses a race). The client is one asyncio process; it is measured in
the same run for both configurations, so the printed ratio (2 workers / 1 worker throughput,
target >= 1.6) compares like with like. On a 2-core machine the client and PostgreSQL share
the cores with the workers, which caps the ratio below the ideal 2.0.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    bench_env,
    fresh_postgres_database,
    gunicorn,
    manage,
    percentile,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
RUNS_PER_CLIENT = 4


async def client_loop(http: httpx.AsyncClient, runs: list[str], stop_at: float,
                      samples: dict[str, list[float]], rng: random.Random) -> None:
    paused: set[str] = set()
    while time.perf_counter() < stop_at:
        roll = rng.random()
        if roll < 0.5:
            kind, call = "hub", http.get("/v1/operations/hub")
        elif roll < 0.9:
            body = {"domain": f"bench-{rng.randrange(5)}", "event_type": "run",
                    "metric_type": "latency_ms", "value": rng.uniform(50, 500)}
            kind, call = "event", http.post("/v1/outcomes/events", json=body)
        else:
            run = rng.choice(runs)
            action = "resume" if run in paused else "pause"
            paused.symmetric_difference_update({run})
            kind = "control"
            call = http.post(f"/v1/operations/processes/{run}/control",
                             json={"action": action, "reason": "bench"})
        start = time.perf_counter()
        response = await call
        samples[kind].append(time.perf_counter() - start)
        if response.status_code >= 400:
            raise SystemExit(f"{kind} → {response.status_code}: {response.text[:300]}")


async def drive(url: str, token: str, runs: list[str]) -> tuple[float, dict[str, list[float]]]:
    samples: dict[str, list[float]] = defaultdict(list)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=30) as http:
        for _ in range(20):  # warm-up
            await http.get("/v1/operations/hub")
        started = time.perf_counter()
        stop_at = started + SECONDS
        await asyncio.gather(*(
            client_loop(http, runs[i * RUNS_PER_CLIENT:(i + 1) * RUNS_PER_CLIENT], stop_at,
                        samples, random.Random(i))
            for i in range(CONCURRENCY)
        ))
        elapsed = time.perf_counter() - started
    return elapsed, samples


def create_runs(url: str, token: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for n in range(count):
            response = http.post("/v1/operations/workflow-runs",
                                 json={"workflow_name": f"bench-{n}", "status": "running"})
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


def main() -> None:
    database_url = fresh_postgres_database("agent33_bench_scale")
    env = bench_env(database_url)
    manage(env, "migrate", "--noinput")
    manage(env, "create_tenant", "bench")
    token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "admin").strip()
    token = token.splitlines()[-1]
    results = {}
    for workers in (1, 2):
        with gunicorn(env, workers=workers) as url:
            runs = create_runs(url, token, CONCURRENCY * RUNS_PER_CLIENT)
            elapsed, samples = asyncio.run(drive(url, token, runs))
        total = sum(len(v) for v in samples.values())
        results[workers] = (total / elapsed, samples)
        print(f"{workers} worker(s): {total / elapsed:7.1f} req/s over {elapsed:.1f} s "
              f"({total} requests)")
        for kind in ("hub", "event", "control"):
            values = samples[kind]
            print(f"    {kind:8s} n={len(values):5d}  p50 {percentile(values, 50) * 1000:6.1f} ms"
                  f"  p95 {percentile(values, 95) * 1000:6.1f} ms")
    ratio = results[2][0] / results[1][0]
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}  (target >= 1.6)")


if __name__ == "__main__":
    main()
