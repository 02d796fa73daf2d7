"""Shared helpers for benchmarks: a real gunicorn server, a scratch database, percentiles,
and the figures each benchmark returns (`make bench-smoke` reports them)."""

from __future__ import annotations

import math
import operator
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
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
) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "agent33.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--log-level", "warning", *extra_args],
        cwd=ROOT, env=env, stdout=stdout, stderr=stderr,
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
