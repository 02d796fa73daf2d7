"""Does the service scale out? A mixed workload against gunicorn with 1 and then 2 workers.

Run: `.venv/bin/python bench/scale_workers.py` (PostgreSQL on 127.0.0.1; creates and drops
its own database). BENCH_SECONDS (default 20) per configuration, split into BENCH_ROUNDS
(default 4) rounds that alternate between the two servers (1, 2, 2, 1, ...), both running
the whole time; BENCH_CONCURRENCY (default 8) concurrent clients.

The workload is what an operations console and agent runtimes send at once: 50 % hub reads,
40 % outcome event writes, 10 % controls (pause/resume of workflow runs, each client on its
own runs so no control loses a race). The clients are threads of this one process sending
prepared requests over plain sockets (see LeanClient: on a 2-core machine the load generator
shares the cores with the workers and PostgreSQL, so a heavy HTTP library would cap what a
second worker can show; its CPU per request is printed). Both configurations are measured
in the same run with the same clients, in alternating rounds so that a machine whose speed
drifts during the run weighs on both alike; the printed ratio (2 workers / 1 worker
throughput, target >= 1.6) compares like with like, and the per-round ratios show its spread.
`run()` returns the figures (`make bench-smoke` calls it for fewer seconds).
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
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
    percentile,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
RUNS_PER_CLIENT = 4
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
DB_NAME = "agent33_bench_scale"
TARGET_RATIO = 1.6


class LeanClient:
    """One load-generating client: plain blocking sockets, requests prepared as bytes.

    The client shares the machine's cores with gunicorn and PostgreSQL, so every
    millisecond of CPU it spends is taken from the server being measured. This one spends
    about half a millisecond per request (the bench prints it); with an asyncio httpx client
    in its place, the same servers showed a ratio of 1.44 where this shows about 1.9.
    Gunicorn's sync workers close the connection after each response, so each request is
    one connection, read to its end.
    """

    def __init__(self, address: tuple[str, int], token: str) -> None:
        self.address = address
        self.head = f"Host: {address[0]}:{address[1]}\r\nAuthorization: Bearer {token}\r\n"

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        extra = (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                 if body is not None else "")
        message = f"{method} {path} HTTP/1.1\r\n{self.head}{extra}Connection: close\r\n\r\n"
        with socket.create_connection(self.address, timeout=30) as conn:
            conn.sendall(message.encode() + payload)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        response = b"".join(chunks)
        return int(response[9:12]), response


def client_loop(client: LeanClient, runs: list[str], paused: set[str], stop_at: float,
                samples: dict[str, list[float]], rng: random.Random) -> None:
    while time.perf_counter() < stop_at:
        roll = rng.random()
        if roll < 0.5:
            kind, call = "hub", ("GET", "/v1/operations/hub", None)
        elif roll < 0.9:
            body = {"domain": f"bench-{rng.randrange(5)}", "event_type": "run",
                    "metric_type": "latency_ms", "value": rng.uniform(50, 500)}
            kind, call = "event", ("POST", "/v1/outcomes/events", body)
        else:
            run = rng.choice(runs)
            action = "resume" if run in paused else "pause"
            paused.symmetric_difference_update({run})
            kind = "control"
            call = ("POST", f"/v1/operations/processes/{run}/control",
                    {"action": action, "reason": "bench"})
        start = time.perf_counter()
        status, response = client.request(*call)
        samples[kind].append(time.perf_counter() - start)
        if status >= 400:
            raise SystemExit(f"{kind} → {status}: {response[:400]!r}")


@dataclass
class Configuration:
    """One gunicorn server under test and what its clients have measured so far."""

    workers: int
    client: LeanClient
    runs: list[str]
    concurrency: int
    # Per client thread, kept across rounds: which of its runs it paused, its random stream.
    paused: list[set[str]] = field(init=False)
    rngs: list[random.Random] = field(init=False)
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    elapsed: float = 0.0
    client_cpu: float = 0.0
    round_rates: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.paused = [set() for _ in range(self.concurrency)]
        self.rngs = [random.Random(i) for i in range(self.concurrency)]

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.samples.values())

    def drive(self, seconds: float) -> None:
        """`concurrency` client threads for `seconds`, each on its own RUNS_PER_CLIENT runs."""
        before = self.requests
        cpu_started, started = time.process_time(), time.perf_counter()
        stop_at = started + seconds
        threads = [
            threading.Thread(target=client_loop, args=(
                self.client, self.runs[i * RUNS_PER_CLIENT:(i + 1) * RUNS_PER_CLIENT],
                self.paused[i], stop_at, self.samples, self.rngs[i]))
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        self.elapsed += elapsed
        self.client_cpu += time.process_time() - cpu_started
        self.round_rates.append((self.requests - before) / elapsed)


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
        configurations = []
        for workers in (1, 2):
            url = servers.enter_context(gunicorn(env, workers=workers))
            host, port = url.removeprefix("http://").split(":")
            client = LeanClient((host, int(port)), token)
            for _ in range(20):  # warm-up
                client.request("GET", "/v1/operations/hub")
            runs = create_runs(url, token, concurrency * RUNS_PER_CLIENT)
            configurations.append(Configuration(workers, client, runs, concurrency))
        # Short rounds in ABBA order: a machine that speeds up or slows down during the run
        # (shared hosts do) weighs on both configurations alike.
        for index in range(rounds):
            for configuration in configurations[:: 1 if index % 2 == 0 else -1]:
                configuration.drive(seconds / rounds)
    for configuration in configurations:
        rate = configuration.requests / configuration.elapsed
        cpu_ms = configuration.client_cpu / configuration.requests * 1000
        print(f"{configuration.workers} worker(s): {rate:7.1f} req/s over "
              f"{configuration.elapsed:.1f} s ({configuration.requests} requests; load client "
              f"CPU {cpu_ms:.2f} ms/request)")
        for kind in ("hub", "event", "control"):
            values = configuration.samples[kind]
            print(f"    {kind:8s} n={len(values):5d}  p50 {percentile(values, 50) * 1000:6.1f} ms"
                  f"  p95 {percentile(values, 95) * 1000:6.1f} ms")
    one, two = configurations
    per_round = [b / a for a, b in zip(one.round_rates, two.round_rates, strict=True)]
    ratio = (two.requests / two.elapsed) / (one.requests / one.elapsed)
    print("per-round ratios: " + ", ".join(f"{r:.2f}" for r in per_round))
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}  (target >= {TARGET_RATIO})")
    return [
        Figure("throughput, 2 workers ÷ 1 worker", ratio, "ratio", f">= {TARGET_RATIO}"),
        Figure("throughput, 1 worker", one.requests / one.elapsed, "req/s"),
        Figure("throughput, 2 workers", two.requests / two.elapsed, "req/s"),
        Figure("lowest per-round ratio", min(per_round), "ratio"),
    ]


def main() -> int:
    return 1 if missed(run()) else 0


if __name__ == "__main__":
    sys.exit(main())
