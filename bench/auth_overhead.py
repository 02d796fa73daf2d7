"""Authentication + scope check overhead.

Run: `.venv/bin/python bench/auth_overhead.py` (PostgreSQL on 127.0.0.1; set
BENCH_DATABASE=sqlite to use a scratch SQLite file instead).

A real gunicorn (1 worker) serves the same no-op view twice: with bearer-token
authentication, scope check and throttle, and with none. Requests alternate between the two so
both see the same machine conditions. Prints p50/p95 of each and their ratios (target ≤ 1.3).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import bench_env, fresh_postgres_database, gunicorn, manage, summarize

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3000"))


def main() -> None:
    if os.environ.get("BENCH_DATABASE") == "sqlite":
        database_url = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    else:
        database_url = fresh_postgres_database("agent33_bench_auth")
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
        import time

        for _ in range(ROUNDS):
            start = time.perf_counter()
            response = client.get("/bench/noop-auth", headers=headers)
            authed.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
            start = time.perf_counter()
            response = client.get("/bench/noop-anon")
            anonymous.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text

    a, b = summarize(authed), summarize(anonymous)
    print(f"database: {database_url.split(':')[0]}, rounds: {ROUNDS}")
    print(f"unauthenticated no-op  p50 {b['p50_ms']:.3f} ms  p95 {b['p95_ms']:.3f} ms (baseline)")
    print(f"authenticated no-op    p50 {a['p50_ms']:.3f} ms  p95 {a['p95_ms']:.3f} ms")
    print(f"ratio p50 {a['p50_ms'] / b['p50_ms']:.2f}  p95 {a['p95_ms'] / b['p95_ms']:.2f}"
          "  (target ≤ 1.3)")


if __name__ == "__main__":
    main()
