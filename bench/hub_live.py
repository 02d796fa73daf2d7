"""The live hub under 50 open streams (DESIGN §8.4), on PostgreSQL, served as deployed: the
streams by gunicorn with one uvicorn worker (agent33.asgi).

    .venv/bin/python bench/hub_live.py [--streams 50] [--changes 200] [--idle 30]
                                       [--browser-changes 30] [--smoke]

1. Commit → event: this process makes `--changes` status changes (a workflow run paused and
   resumed through the service, one at a time, 50 ms apart) while `--streams` clients hold
   the stream open; for every change and every client, the time from the change's commit
   (the service call returned) to the client reading its event. p95 target < 500 ms.
2. Idle: the same streams open for `--idle` seconds with nothing changing; the table reads
   in that time (pg_stat_user_tables, sequential + index scans: every query of the service
   reads a table) and the database's transactions (pg_stat_database, which also counts
   autovacuum's work on the freshly written tables). Target: no table read at all (the
   keep-alives need no query, the broker waits on LISTEN).
3. Change → row visible in Chromium: a staff member's hub page (Playwright, Debian's
   chromium) living on the stream while the other streams stay open; for each of
   `--browser-changes` new workflow runs, the time from its commit to its row being shown.
   p95 target < 500 ms. Skipped (said so) without chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    PG_ADMIN_URL,
    Figure,
    bench_env,
    database_name,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
    missed,
    percentile,
)

DATABASE = "agent33_hub_live"
STAFF_PASSWORD = "bench-hub-live-password"
STATS_DELAY = 11.0


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "agent33.settings"
    import django

    django.setup()


class StreamClient:
    """One open stream on a raw connection: records when each event's data line arrived."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.arrivals: dict[tuple[str, str], float] = {}
        self.open = asyncio.Event()
        self.keepalives = 0

    async def run(self, stop: asyncio.Event) -> None:
        import json

        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write((f"GET /v1/operations/hub/stream?duration=3600 HTTP/1.1\r\n"
                      f"Host: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"stream refused: {status!r}")
        reading = asyncio.ensure_future(self._read(reader, json))
        await stop.wait()
        reading.cancel()
        writer.close()

    async def _read(self, reader, json) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"retry:"):
                self.open.set()
            elif line.startswith(b": keep-alive"):
                self.keepalives += 1
            elif line.startswith(b"data: {"):
                now = time.perf_counter()
                data = json.loads(line[6:])
                self.arrivals.setdefault((data["id"], data["status"]), now)


def _activity(database: str) -> tuple[int, int]:
    """(transactions, table scans) of the bench database so far. Transactions include
    autovacuum's (a freshly written database gets vacuumed and analysed); scans
    (pg_stat_user_tables: sequential + index) count only queries that read a table, read
    from a connection whose own query reads none."""
    import psycopg

    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database_name(database)}"
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        (xacts,) = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [database_name(database)]).fetchone()
        (scans,) = conn.execute(
            "SELECT COALESCE(SUM(COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0)), 0) "
            "FROM pg_stat_user_tables").fetchone()
    return xacts, int(scans)


def run(*, streams: int = 50, changes: int = 200, idle: float = 30.0,
        browser_changes: int = 30) -> list[Figure]:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent33-live-")))
        url = fresh_postgres_database(DATABASE)
        stack.callback(drop_postgres_database, DATABASE)
        env = bench_env(url, DB_POOL_SIZE="4", LOG_LEVEL="WARNING",
                        AGENT33_HUB_STREAMS_MAX=str(streams + 10))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("REDIS_URL", None)
        manage(env, "migrate", "--noinput")
        manage(env, "create_tenant", "bench")
        token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "admin")
        token = token.strip().splitlines()[-1]
        log = stack.enter_context(open(scratch / "server.log", "w"))
        server = stack.enter_context(gunicorn(
            env, application="agent33.asgi:application",
            extra_args=("-k", "uvicorn_worker.UvicornWorker", "--timeout", "120"),
            stdout=log, stderr=log))
        setup_django({k: v for k, v in env.items() if k != "PYTHONPATH"})
        host, port = server.removeprefix("http://").split(":")
        return _measure(host, int(port), server, token, streams=streams, changes=changes,
                        idle=idle, browser_changes=browser_changes)


def _measure(host, port, server, token, *, streams, changes, idle, browser_changes):
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from operations import services
    from operations.models import WorkflowRun
    from operations.transitions import Origin

    tenant = Tenant.objects.get(pk="bench")
    origin = Origin(actor="system:bench", path="api", scopes=frozenset({"admin"}))
    with tenant_scope(tenant):
        run_obj = services.workflow_run_create(tenant=tenant, workflow_name="live-bench",
                                               status="running")

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    clients = [StreamClient(host, port, token) for _ in range(streams)]

    async def hold_open():
        await asyncio.gather(*(c.run(stop) for c in clients))

    runner = threading.Thread(target=loop.run_until_complete, args=(hold_open(),), daemon=True)

    runner.start()
    deadline = time.monotonic() + 30
    while not all(c.open.is_set() for c in clients):
        if time.monotonic() > deadline:
            raise SystemExit("the streams did not open")
        time.sleep(0.05)
    time.sleep(0.5)

    # 1. commit → event at every client.
    commits: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    status = "running"
    with tenant_scope(tenant):
        for _ in range(changes):
            status = "paused" if status == "running" else "running"
            obj = WorkflowRun.objects.get(pk=run_obj.pk)
            services.workflow_run_transition(run=obj, origin=origin, status=status)
            commits[(run_obj.pk, status)] = time.perf_counter()
            # Each (id, status) pair is kept once per client: wait for every client to
            # have this one before the same pair comes round again.
            _wait_all(clients, (run_obj.pk, status), timeout=10)
            for client in clients:
                arrived = client.arrivals.pop((run_obj.pk, status), None)
                if arrived is not None:
                    latencies.append(arrived - commits[(run_obj.pk, status)])
            time.sleep(0.05)
    expected = changes * streams
    print(f"commit → event: {len(latencies)} of {expected} events arrived; "
          f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
          f"p95 {percentile(latencies, 95) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms  ({streams} streams)", flush=True)

    # 2. idle.
    # An idle backend reports its statistics up to 10 s after its last transaction
    # (PostgreSQL's PGSTAT_IDLE_INTERVAL): wait that out on both edges of the window, so the
    # changes above are counted before it and whatever ran in it is counted after.
    time.sleep(STATS_DELAY)
    xacts_before, scans_before = _activity(DATABASE)
    keepalives_before = sum(c.keepalives for c in clients)
    time.sleep(idle)
    keepalives = sum(c.keepalives for c in clients) - keepalives_before
    time.sleep(STATS_DELAY)
    xacts_after, scans_after = _activity(DATABASE)
    idle_xacts = xacts_after - xacts_before - 1  # less the reading connection's own
    idle_scans = scans_after - scans_before
    print(f"idle {idle:.0f} s with {streams} streams open: {idle_scans} table reads, "
          f"{idle_xacts} database transactions (autovacuum's included), "
          f"{keepalives} keep-alives received", flush=True)

    figures = [
        Figure("commit → event p95", percentile(latencies, 95) * 1000, "ms", "< 500"),
        Figure("commit → event p50", percentile(latencies, 50) * 1000, "ms"),
        Figure("events delivered", len(latencies) / expected, "ratio", ">= 1"),
        Figure(f"table reads while {streams} streams idle {idle:.0f} s", idle_scans, "count",
               "== 0"),
        Figure(f"database transactions while {streams} streams idle {idle:.0f} s "
               "(autovacuum included)", idle_xacts, "count"),
    ]
    if browser_changes:
        figures += _browser(server, tenant, browser_changes)
    loop.call_soon_threadsafe(stop.set)
    runner.join(5)
    return figures


def _wait_all(clients, key, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(key in c.arrivals for c in clients):
            return
        time.sleep(0.002)


def _browser(server: str, tenant, count: int) -> list[Figure]:
    chromium = shutil.which("chromium")
    if not chromium:
        print("change → row visible: skipped (Debian's chromium is not installed)")
        return []
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from agent33.tenancy.context import tenant_scope
    from operations import services

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls beside Playwright's loop
    get_user_model().objects.create_user("bench-staff", password=STAFF_PASSWORD,
                                         is_staff=True, is_superuser=True)
    latencies = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{server}/admin/login/")
        page.fill("#id_username", "bench-staff")
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{server}/admin/")
        page.goto(f"{server}/admin/operations/hub/")
        page.wait_for_selector("#operations-hub[data-live=stream]", timeout=30_000)
        page.wait_for_timeout(500)
        for n in range(count):
            with tenant_scope(tenant):
                run = services.workflow_run_create(tenant=tenant, workflow_name=f"shown-{n}",
                                                   status="running")
            committed = time.perf_counter()
            page.wait_for_selector(f'tr[data-process-id="{run.pk}"][data-via=stream]',
                                   timeout=10_000)
            latencies.append(time.perf_counter() - committed)
            page.wait_for_timeout(100)
        browser.close()
    print(f"change → row visible in Chromium: p50 {percentile(latencies, 50) * 1000:.1f} ms, "
          f"p95 {percentile(latencies, 95) * 1000:.1f} ms over {count} new runs", flush=True)
    return [Figure("change → row visible in Chromium p95", percentile(latencies, 95) * 1000,
                   "ms", "< 500")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--browser-changes", type=int, default=30)
    parser.add_argument("--smoke", action="store_true",
                        help="10 streams, 20 changes, 5 s idle, 5 browser changes")
    args = parser.parse_args(argv)
    if args.smoke:
        sizes = {"streams": 10, "changes": 20, "idle": 5.0, "browser_changes": 5}
    else:
        sizes = {"streams": args.streams, "changes": args.changes, "idle": args.idle,
                 "browser_changes": args.browser_changes}
    figures = run(**sizes)
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
