"""Authentication + scope check overhead.

Run: `.venv/bin/python bench/auth_overhead.py [--rounds 3000]` (PostgreSQL on 127.0.0.1; set
BENCH_DATABASE=sqlite to use a scratch SQLite file instead). BENCH_ROUNDS sets the default
round count too.

A real gunicorn (1 worker) serves the same no-op view twice: with bearer-token
authentication, scope check and throttle, and with none. Requests alternate between the two so
both see the same machine conditions. Prints p50/p95 of each and their ratios (target: p50
ratio ≤ 1.3). `run()` returns the figures (`make bench-smoke` calls it with fewer rounds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    Figure,
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
    missed,
    summarize,
)

DB_NAME = "agent33_bench_auth"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3000"))
TARGET_RATIO = 1.3  # issue 15: with revocation applied at once on every worker


def run(*, rounds: int = ROUNDS, sqlite: bool = False) -> list[Figure]:
    if sqlite:
        database_url = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    else:
        database_url = fresh_postgres_database(DB_NAME)
    try:
        env = bench_env(database_url, DJANGO_SETTINGS_MODULE="bench.settings_auth")
        manage(env, "migrate", "--noinput")
        manage(env, "create_tenant", "bench")
        token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "workflows:read")
        token = token.strip().splitlines()[-1]

        with gunicorn(env) as url, httpx.Client(base_url=url) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(200):  # warm up both paths
                client.get("/bench/noop-auth", headers=headers)
                client.get("/bench/noop-anon")
            authed: list[float] = []
            anonymous: list[float] = []
            for _ in range(rounds):
                start = time.perf_counter()
                response = client.get("/bench/noop-auth", headers=headers)
                authed.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
                start = time.perf_counter()
                response = client.get("/bench/noop-anon")
                anonymous.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
    finally:
        if not sqlite:
            drop_postgres_database(DB_NAME)

    a, b = summarize(authed), summarize(anonymous)
    print(f"database: {database_url.split(':')[0]}, rounds: {rounds}")
    print(f"unauthenticated no-op  p50 {b['p50_ms']:.3f} ms  p95 {b['p95_ms']:.3f} ms (baseline)")
    print(f"authenticated no-op    p50 {a['p50_ms']:.3f} ms  p95 {a['p95_ms']:.3f} ms")
    print(f"ratio p50 {a['p50_ms'] / b['p50_ms']:.2f}  p95 {a['p95_ms'] / b['p95_ms']:.2f}"
          f"  (target: p50 ≤ {TARGET_RATIO})")
    return [
        Figure("authenticated ÷ unauthenticated no-op, p50", a["p50_ms"] / b["p50_ms"], "ratio",
               f"<= {TARGET_RATIO}"),
        Figure("authenticated ÷ unauthenticated no-op, p95", a["p95_ms"] / b["p95_ms"],
               "ratio"),
        Figure("authenticated no-op p50", a["p50_ms"], "ms"),
        Figure("unauthenticated no-op p50", b["p50_ms"], "ms"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    figures = run(rounds=args.rounds, sqlite=os.environ.get("BENCH_DATABASE") == "sqlite")
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
