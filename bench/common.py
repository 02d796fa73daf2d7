"""Shared helpers for benchmarks: a real gunicorn server, a scratch database, percentiles,
the figures each benchmark returns (`make bench-smoke` reports them), and the mixed
hub/event/control workload of bench/scale_workers.py and bench/ab.py, sent by lean socket
clients."""

from __future__ import annotations

import json
import math
import operator
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")

_COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
                "==": operator.eq}


@dataclass(frozen=True)
class Figure:
    """One measured figure, and the target it must meet (`"<= 1.2"`, `">= 0.25"`, `"== 1"`;
    None: reported, not judged)."""

    metric: str
    value: float
    unit: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.target is not None:
            comparison, _, bound = self.target.partition(" ")
            if comparison not in _COMPARISONS:
                raise ValueError(f"target {self.target!r}: expected '<op> <number>'")
            float(bound)

    @property
    def met(self) -> bool | None:
        """None without a target; a value that is not a finite number meets none."""
        if self.target is None:
            return None
        if not math.isfinite(self.value):
            return False
        comparison, _, bound = self.target.partition(" ")
        return bool(_COMPARISONS[comparison](self.value, float(bound)))


def missed(figures: list[Figure]) -> list[Figure]:
    return [figure for figure in figures if figure.met is False]


def database_name(name: str) -> str:
    """A scratch database's name, prefixed with $BENCH_DB_PREFIX when set, so that runs of
    several checkouts on one PostgreSQL server never drop each other's databases."""
    prefix = os.environ.get("BENCH_DB_PREFIX", "")
    return f"{prefix}_{name}" if prefix else name


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p95_ms": percentile(samples, 95) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_postgres_database(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    """Drop and create a scratch PostgreSQL database; return its DATABASE_URL.
    `admin_url` is any database URL on the server (its database is only used to connect)."""
    import psycopg

    name = database_name(name)
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    import psycopg

    name = database_name(name)
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY="bench-" + "k" * 50,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        AGENT33_THROTTLE_RATE="1000000/min",
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, root: Path = ROOT,
           python: str = sys.executable) -> str:
    """`manage.py` of the checkout at `root` (another one's for bench/ab.py)."""
    result = subprocess.run(
        [python, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@contextmanager
def gunicorn(
    env: dict[str, str],
    *,
    workers: int = 1,
    threads: int = 1,
    extra_args: tuple[str, ...] = (),
    stdout: IO | None = None,
    stderr: IO | None = None,
    root: Path = ROOT,
    application: str = "agent33.wsgi:application",
    python: str = sys.executable,
) -> Iterator[str]:
    """A gunicorn serving the checkout at `root` (its working directory, so it reads that
    checkout's gunicorn.conf.py); yields its URL once /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [python, "-m", "gunicorn", application, "--bind",
         f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--log-level", "warning", *extra_args],
        cwd=root, env=env, stdout=stdout, stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def job_worker(env: dict[str, str], *, concurrency: int = 2, extra_args: tuple[str, ...] = (),
               stdout: IO | None = None, stderr: IO | None = None
               ) -> Iterator[subprocess.Popen]:
    """`manage.py worker` (the embedded mode's background worker) for the block, in its own
    process group, stopped with it (its jobs' processes too)."""
    import signal

    process = subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--concurrency", str(concurrency),
         "--interval", "0.2", *extra_args],
        cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- the mixed workload (bench/scale_workers.py, bench/ab.py) ------------------------------

RUNS_PER_CLIENT = 4


class LeanClient:
    """One load-generating client: plain blocking sockets, requests prepared as bytes.

    The client shares the machine's cores with gunicorn and PostgreSQL, so every
    millisecond of CPU it spends is taken from the server being measured. This one spends
    about half a millisecond per request (the benches print it); with an asyncio httpx client
    in its place, the same servers showed a scale_workers ratio of 1.44 where this shows
    about 1.9. Gunicorn's sync workers close the connection after each response, so each
    request is one connection, read to its end.
    """

    def __init__(self, address: tuple[str, int], token: str) -> None:
        self.address = address
        self.head = f"Host: {address[0]}:{address[1]}\r\nAuthorization: Bearer {token}\r\n"

    @classmethod
    def for_url(cls, url: str, token: str) -> LeanClient:
        host, port = url.removeprefix("http://").split(":")
        return cls((host, int(port)), token)

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


def mixed_client_loop(client: LeanClient, runs: list[str], paused: set[str], stop_at: float,
                      samples: dict[str, list[float]], rng: random.Random) -> None:
    """What an operations console and agent runtimes send at once: 50 % hub reads, 40 %
    outcome event writes, 10 % controls (pause/resume of this client's own workflow runs,
    so no control loses a race). Any 4xx/5xx stops the bench: it measures answers, not
    errors."""
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


def create_runs(url: str, token: str, count: int) -> list[str]:
    """`count` running workflow runs for the controls to pause and resume."""
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for n in range(count):
            response = http.post("/v1/operations/workflow-runs",
                                 json={"workflow_name": f"bench-{n}", "status": "running"})
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


@dataclass
class MixedLoad:
    """One gunicorn server under the mixed workload, and what its clients measured so far."""

    label: str
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

    @classmethod
    def prepare(cls, label: str, url: str, token: str, concurrency: int) -> MixedLoad:
        """Warm the server up (20 hub reads) and create the clients' workflow runs."""
        client = LeanClient.for_url(url, token)
        for _ in range(20):
            client.request("GET", "/v1/operations/hub")
        runs = create_runs(url, token, concurrency * RUNS_PER_CLIENT)
        return cls(label, client, runs, concurrency)

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.samples.values())

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed

    def drive(self, seconds: float) -> None:
        """`concurrency` client threads for `seconds`, each on its own RUNS_PER_CLIENT runs."""
        before = self.requests
        cpu_started, started = time.process_time(), time.perf_counter()
        stop_at = started + seconds
        threads = [
            threading.Thread(target=mixed_client_loop, args=(
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

    def warm_up(self, seconds: float) -> None:
        """Drive the server for `seconds` and forget what was measured: the first requests
        of each kind pay for imports and caches a running service has already paid for."""
        self.drive(seconds)
        self.samples.clear()
        self.elapsed = self.client_cpu = 0.0
        self.round_rates.clear()

    def report(self) -> None:
        cpu_ms = self.client_cpu / self.requests * 1000
        print(f"{self.label}: {self.rate:7.1f} req/s over {self.elapsed:.1f} s "
              f"({self.requests} requests; load client CPU {cpu_ms:.2f} ms/request)")
        for kind in ("hub", "event", "control"):
            values = self.samples[kind]
            print(f"    {kind:8s} n={len(values):5d}  p50 {percentile(values, 50) * 1000:6.1f} ms"
                  f"  p95 {percentile(values, 95) * 1000:6.1f} ms")


def drive_abba(first: MixedLoad, second: MixedLoad, *, rounds: int, seconds: float) -> None:
    """`rounds` rounds of `seconds` each, alternating A B, B A, ...: a machine that speeds up
    or slows down during the run (shared hosts do) weighs on both servers alike."""
    for index in range(rounds):
        for load in (first, second) if index % 2 == 0 else (second, first):
            load.drive(seconds)
