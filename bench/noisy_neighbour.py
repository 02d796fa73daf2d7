"""Noisy neighbour: does one tenant's worst-case bulk make another tenant wait?

Run: `.venv/bin/python bench/noisy_neighbour.py` (PostgreSQL on 127.0.0.1; creates and drops
its own database). Gunicorn with 2 sync workers, as `docker compose` runs it.

1. Bulk cost by variety: tenant A posts bulks of 10,000 events, alternately all under one
   (metric, domain) key and all under distinct keys (every event its own domain: 10,000 trend
   keys for decline detection). Prints the median time of each and their ratio (target:
   all-distinct ÷ one-key <= 3).
2. Tenant B alone, then B while A sends all-distinct 10,000-event bulks in a loop, in
   alternating rounds (alone, loaded, alone, loaded, ...) so a machine whose speed drifts
   weighs on both alike. B is one client alternating `GET /v1/operations/hub` and
   `POST /v1/outcomes/events`. Prints B's p50/p95 per request kind in each condition and the
   p95 ratio (target: loaded ÷ alone <= 2).

BENCH_SECONDS (default 30) per condition, split into BENCH_ROUNDS (default 3) rounds.
`run()` returns the figures. The neighbour rounds run with the default
AGENT33_EVENTS_PER_MINUTE (60,000 per tenant), once in each documented mode: with Redis
(db 12 on 127.0.0.1, as `docker compose` runs) and without (the counts in the database, as
gunicorn runs without REDIS_URL); BENCH_MODES="redis" or "database" runs one of them,
BENCH_REDIS_URL names another Redis, BENCH_EVENTS_PER_MINUTE sets another allowance. The
bulk-cost rounds run without the allowance (they send 60,000 events in about 10 s). Tenant
A is a process of its own that re-sends a refused bulk at once, ignoring Retry-After: the
worst case.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
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
    job_worker,
    manage,
    missed,
    percentile,
)
from bench.scale_workers import LeanClient

SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BULK = 10_000
DB_NAME = "agent33_bench_noisy"
TARGET_VARIETY = 3.0
TARGET_NEIGHBOUR = 2.0
MODES = [m.strip() for m in os.environ.get("BENCH_MODES", "redis,database").split(",")
         if m.strip()]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def token(env: dict[str, str], tenant: str, scopes: str) -> str:
    issued = manage(env, "issue_token", "--tenant", tenant, "--scopes", scopes)
    return issued.strip().splitlines()[-1]


class EventRateExceeded(Exception):
    """A's bulk was refused (429): over its events-per-minute allowance."""


class BulkSender:
    """Tenant A: 10,000-event bulks, every one under fresh keys (nothing is ever repeated)."""

    def __init__(self, url: str, token: str, prefix: str = "a") -> None:
        self.prefix = prefix
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                   timeout=300)
        self.sent = 0
        self.refused = 0  # 429s: over the tenant's events-per-minute allowance

    def post(self, *, distinct: bool) -> float:
        """Send one bulk; return the seconds until its answer."""
        self.sent += 1
        batch = self.sent
        events = [
            {"domain": f"{self.prefix}-{batch}-{n}" if distinct else f"{self.prefix}-{batch}",
             "event_type": "run",
             "metric_type": "success_rate", "value": float(n % 2)}
            for n in range(BULK)
        ]
        started = time.perf_counter()
        response = self.client.post("/v1/outcomes/events/bulk", json={"events": events})
        elapsed = time.perf_counter() - started
        if response.status_code == 429:
            raise EventRateExceeded
        if response.status_code != 201:
            raise SystemExit(f"bulk → {response.status_code}: {response.text[:300]}")
        return elapsed

    def post_until_evaluated(self, *, distinct: bool) -> tuple[float, float]:
        """Send one bulk; return the seconds until its answer and until its last key's trend
        was evaluated (decline detection may finish after the answer)."""
        started = time.perf_counter()
        answered = self.post(distinct=distinct)
        last = (f"{self.prefix}-{self.sent}-{BULK - 1}" if distinct
                else f"{self.prefix}-{self.sent}")
        while True:
            response = self.client.get("/v1/outcomes/dashboard", params={"domain": last})
            if response.status_code != 200:
                raise SystemExit(f"dashboard → {response.status_code}: {response.text[:300]}")
            if response.json()["domains"]:
                return answered, time.perf_counter() - started
            time.sleep(0.05)



def noisy_tenant(url: str, token: str, stop, sent, refused) -> None:
    """Tenant A's loop, in its own process; counts what it sent and what was refused. Its
    bodies are built once (ten bulks of 10,000 distinct keys each): on this 2-core machine
    a client building 1 MB of JSON per request would itself take a core from the server, which
    an attacker's client elsewhere would not."""
    prefix = f"a{os.getpid()}"
    bodies = [
        json.dumps({"events": [
            {"domain": f"{prefix}-{batch}-{n}", "event_type": "run",
             "metric_type": "success_rate", "value": float(n % 2)}
            for n in range(BULK)
        ]}).encode()
        for batch in range(10)
    ]
    client = httpx.Client(base_url=url, timeout=300, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    batch = 0
    while not stop.is_set():
        response = client.post("/v1/outcomes/events/bulk", content=bodies[batch % len(bodies)])
        batch += 1
        if response.status_code == 429:
            with refused.get_lock():
                refused.value += 1
        elif response.status_code != 201:
            raise SystemExit(f"bulk → {response.status_code}: {response.text[:300]}")
        with sent.get_lock():
            sent.value += 1


def tenant_b(client: LeanClient, seconds: float, samples: dict[str, list[float]]) -> None:
    stop_at = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < stop_at:
        n += 1
        if n % 2:
            kind, call = "hub", ("GET", "/v1/operations/hub", None)
        else:
            body = {"domain": "b-checkout", "event_type": "run", "metric_type": "latency_ms",
                    "value": 100.0 + n % 7}
            kind, call = "event", ("POST", "/v1/outcomes/events", body)
        started = time.perf_counter()
        status, response = client.request(*call)
        samples[kind].append(time.perf_counter() - started)
        if status >= 400:
            raise SystemExit(f"tenant B {kind} → {status}: {response[:300]!r}")


def neighbour_rounds(env: dict[str, str], mode: str, a_token: str, b_token: str, *,
                     seconds: float, rounds: int) -> list[Figure]:
    """Tenant B alone vs while A floods, in alternating rounds, on a server in `mode`."""
    figures: list[Figure] = []
    # The worker evaluates large bulks' keys (jobs), as a deployment runs it.
    with gunicorn(env, workers=2) as url, job_worker(env, concurrency=2):
        sender = BulkSender(url, a_token)
        host, port = url.removeprefix("http://").split(":")
        b_client = LeanClient((host, int(port)), b_token)
        alone: dict[str, list[float]] = {"hub": [], "event": []}
        loaded: dict[str, list[float]] = {"hub": [], "event": []}
        # A runs in a process of its own: building and sending its bodies in this one
        # would take the interpreter lock from B's client and slow B's measurements.
        context = multiprocessing.get_context("spawn")
        sent, refused = context.Value("i", 0), context.Value("i", 0)
        for _ in range(rounds):
            tenant_b(b_client, seconds / rounds, alone)
            stop = context.Event()
            noisy = context.Process(target=noisy_tenant,
                                    args=(url, a_token, stop, sent, refused), daemon=True)
            noisy.start()
            time.sleep(2.0)  # A's first bulk is in flight
            tenant_b(b_client, seconds / rounds, loaded)
            stop.set()
            noisy.join()
        sender.sent, sender.refused = sent.value, refused.value
        where = "Redis" if mode == "redis" else "the database (no Redis)"
        print(f"\n{mode}: the allowance counted in {where}")
        print(f"tenant B ({seconds:g} s per condition, {rounds} alternating rounds; "
              f"A sent {sender.sent} bulks in all, {sender.refused} of them refused with "
              "429 over its events-per-minute allowance)")
        print("                 alone p50/p95 (ms)     with A p50/p95 (ms)    p95 ratio")
        for kind in ("hub", "event"):
            a50, a95 = percentile(alone[kind], 50) * 1000, percentile(alone[kind], 95) * 1000
            l50, l95 = (percentile(loaded[kind], 50) * 1000,
                        percentile(loaded[kind], 95) * 1000)
            ratio = l95 / a95
            print(f"  {kind:6} n={len(loaded[kind]):5}  {a50:8.1f} {a95:8.1f}        "
                  f"{l50:8.1f} {l95:8.1f}        {ratio:6.2f}  "
                  f"(target <= {TARGET_NEIGHBOUR:g})")
            figures.append(Figure(f"tenant B {kind} p95, with A's bulks ÷ alone ({mode})",
                                  ratio, "ratio", f"<= {TARGET_NEIGHBOUR:g}"))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"  machine load {load:.2f} (1-min average; {os.cpu_count()} CPUs)")
    return figures


def run(*, seconds: float = SECONDS, rounds: int = ROUNDS, bulks: int = 3) -> list[Figure]:
    database_url = fresh_postgres_database(DB_NAME)
    env = bench_env(database_url, AGENT33_EVENTS_PER_MINUTE="0")
    figures: list[Figure] = []
    try:
        manage(env, "migrate", "--noinput")
        for slug in ("tenant-a", "tenant-b"):
            manage(env, "create_tenant", slug)
        a_token = token(env, "tenant-a", "outcomes:write,outcomes:read")
        b_token = token(env, "tenant-b", "outcomes:write,workflows:read")
        # The worker evaluates the bulks' keys (background jobs, issue 24), as beside any
        # embedded deployment.
        with gunicorn(env, workers=2) as url, job_worker(env, concurrency=2):
            sender = BulkSender(url, a_token)
            sender.post(distinct=False)  # warm up both paths once
            sender.post(distinct=True)
            times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(bulks):
                for distinct in (False, True):
                    times[distinct].append(sender.post_until_evaluated(distinct=distinct))

            def median(distinct: bool, which: int) -> float:
                return statistics.median(t[which] for t in times[distinct])

            print(f"bulk of {BULK:,} events (tenant A, {bulks} each, median ms)")
            print("                  answered   all keys evaluated")
            for distinct, label in ((False, "one key"), (True, "all distinct")):
                print(f"  {label:14} {median(distinct, 0) * 1000:9.0f} "
                      f"{median(distinct, 1) * 1000:12.0f}")
            for which, label in ((0, "answered"), (1, "all keys evaluated")):
                ratio = median(True, which) / median(False, which)
                print(f"  ratio, {label:19} {ratio:5.2f}  (target <= {TARGET_VARIETY:g})")
                figures.append(Figure(f"bulk time until {label}, all-distinct ÷ one key",
                                      ratio, "ratio", f"<= {TARGET_VARIETY:g}"))

        for mode in MODES:
            # The allowance shared by both workers through Redis as `docker compose` runs,
            # or through the database as gunicorn without REDIS_URL runs.
            neighbour_env = bench_env(
                database_url,
                AGENT33_EVENTS_PER_MINUTE=os.environ.get("BENCH_EVENTS_PER_MINUTE", "60000"),
                REDIS_URL=REDIS_URL if mode == "redis" else "",
                CACHE_KEY_PREFIX=f"bench-noisy-{os.getpid()}",
            )
            figures += neighbour_rounds(neighbour_env, mode, a_token, b_token,
                                        seconds=seconds, rounds=rounds)
    finally:
        drop_postgres_database(DB_NAME)
    return figures


def main() -> int:
    return 1 if missed(run()) else 0


if __name__ == "__main__":
    sys.exit(main())
