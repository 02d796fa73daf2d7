"""Does the service scale out? A mixed workload against gunicorn with 1 and then 2 workers.

Run: `.venv/bin/python bench/scale_workers.py` (PostgreSQL on 127.0.0.1; creates and drops
its own database). BENCH_SECONDS (default 20) per configuration, split into BENCH_ROUNDS
(default 4) rounds that alternate between the two servers (1, 2, 2, 1, ...), both running
the whole time; BENCH_CONCURRENCY (default 8) concurrent clients.

The workload is what an operations console and agent runtimes send at once: 50 % hub reads,
40 % outcome event writes, 10 % controls (pause/resume of workflow runs, each client on its
own runs so no control loses a race). The clients are threads of this one process sending
prepared requests over plain sockets (see bench.common.LeanClient: on a 2-core machine the
load generator shares the cores with the workers and PostgreSQL, so a heavy HTTP library would
cap what a second worker can show; its CPU per request is printed). bench/ab.py runs the same
workload against two versions of the code. Both configurations are measured
in the same run with the same clients, in alternating rounds so that a machine whose speed
drifts during the run weighs on both alike; the printed ratio (2 workers / 1 worker
throughput, target >= 1.6) compares like with like, and the per-round ratios show its spread.
`run()` returns the figures (`make bench-smoke` calls it for fewer seconds).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    Figure,
    LeanClient,  # noqa: F401 (bench/noisy_neighbour.py imports it from here)
    MixedLoad,
    bench_env,
    drive_abba,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
    missed,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
DB_NAME = "agent33_bench_scale"
TARGET_RATIO = 1.6


def run(
    *, seconds: float = SECONDS, concurrency: int = CONCURRENCY, rounds: int = ROUNDS
) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs it for fewer seconds)."""
    database_url = fresh_postgres_database(DB_NAME)
    env = bench_env(database_url)
    manage(env, "migrate", "--noinput")
    manage(env, "create_tenant", "bench")
    token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "admin").strip()
    token = token.splitlines()[-1]
    with ExitStack() as servers:
        servers.callback(drop_postgres_database, DB_NAME)
        one, two = (
            MixedLoad.prepare(f"{workers} worker(s)",
                              servers.enter_context(gunicorn(env, workers=workers)),
                              token, concurrency)
            for workers in (1, 2)
        )
        drive_abba(one, two, rounds=rounds, seconds=seconds / rounds)
    one.report()
    two.report()
    per_round = [b / a for a, b in zip(one.round_rates, two.round_rates, strict=True)]
    ratio = two.rate / one.rate
    print("per-round ratios: " + ", ".join(f"{r:.2f}" for r in per_round))
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}  (target >= {TARGET_RATIO})")
    return [
        Figure("throughput, 2 workers ÷ 1 worker", ratio, "ratio", f">= {TARGET_RATIO}"),
        Figure("throughput, 1 worker", one.rate, "req/s"),
        Figure("throughput, 2 workers", two.rate, "req/s"),
        Figure("lowest per-round ratio", min(per_round), "ratio"),
    ]


def main() -> int:
    return 1 if missed(run()) else 0


if __name__ == "__main__":
    sys.exit(main())
