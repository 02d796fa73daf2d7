"""Start real `celery worker` processes against the test database and a Redis broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database this test runs on (PostgreSQL only: a worker process
    cannot share an in-memory SQLite database)."""
    s = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("worker tests need PostgreSQL")
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{s['USER']}{password}@{host}:{port}/{s['NAME']}"


def worker_env(broker_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a worker process on this test's database; `overrides` win (e.g. a
    test settings module)."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "agent33.settings",
        "PYTHONPATH": str(ROOT),
        "AGENT33_PROVIDER_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128",  # loopback provider fakes
        **overrides,
    }


def start_celery_worker(broker_url: str, *, log_path: Path, **env: str) -> subprocess.Popen:
    """Start a real `celery worker` and return once it listens. Its output goes to
    `log_path` (a pipe nobody reads would stall a chatty worker); `process.log_path` keeps it
    for diagnostics."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "agent33", "worker", "--pool=solo",
             "--concurrency=1", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel=INFO"],
            cwd=ROOT, env=worker_env(broker_url, **env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = str(log_path)
    try:
        # Requests created before the worker listens would spend their deadline waiting.
        wait_for(lambda: process.poll() is not None or " ready." in log_path.read_text(),
                 timeout=60, message="the worker to be ready")
    except AssertionError:
        stop_process(process)
        raise
    if process.poll() is not None:
        raise AssertionError(f"the worker exited at start:\n{log_path.read_text()[-3000:]}")
    return process


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL if it will not stop."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def celery_worker(broker_url: str, *, log_path: Path, **env: str) -> Iterator[subprocess.Popen]:
    """A running worker for the block; stopped when it ends."""
    process = start_celery_worker(broker_url, log_path=log_path, **env)
    try:
        yield process
    finally:
        stop_process(process)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn_server(*, workers: int = 2, output: IO | None = None,
                    application: str = "agent33.wsgi:application",
                    extra_args: tuple[str, ...] = (), **extra_env: str) -> Iterator[str]:
    """A real gunicorn on 127.0.0.1 serving the test database; yields its base URL.
    `output`: a file for its stdout and stderr (inherited otherwise); `application` and
    `extra_args` (`-k uvicorn_worker.UvicornWorker`) for the ASGI server."""
    import httpx

    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        DJANGO_SETTINGS_MODULE="agent33.settings",
        PYTHONPATH=str(ROOT),
        **extra_env,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", application, "--bind",
         f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning", *extra_args],
        cwd=ROOT, env=env, start_new_session=True, stdout=output, stderr=output,
    )
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.master_pid = process.pid
    try:
        wait_for(lambda: _healthy(httpx, url), timeout=30, message="gunicorn to start")
        yield url
    finally:
        stop_process(process)


class ServerURL(str):
    """The server's base URL, carrying the gunicorn master's pid for crash tests."""

    master_pid: int


def _healthy(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_fresh_window(*, seconds: int = 60, needed: float = 30) -> None:
    """Rate counters use fixed windows aligned to the Unix epoch (agent33/auth/counters.py):
    a test counting against one window through real processes (whose clocks it cannot hold)
    starts early enough in one to finish within it."""
    left = seconds - time.time() % seconds
    if left < needed:
        time.sleep(left + 0.05)


@contextmanager
def publishing_jobs_to(broker_url: str, key_prefix: str) -> Iterator[None]:
    """This process publishes jobs to a Redis broker under its own key prefix (the
    scaled-out mode; the caller also sets `settings.TASKS` to the Celery backend). Keys of
    that prefix are cleared before and after."""
    import redis

    from agent33.celery import app as celery_app

    client = redis.Redis.from_url(broker_url)

    def clear() -> None:
        for key in client.scan_iter(match=f"{key_prefix}*"):
            client.delete(key)

    def reset_pools() -> None:
        # Forget cached broker connections so the next publish uses the current broker_url.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    clear()
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_transport_options
    reset_pools()
    conf.broker_url, conf.broker_transport_options = broker_url, {"global_keyprefix": key_prefix}
    try:
        yield
    finally:
        reset_pools()
        conf.broker_url, conf.broker_transport_options = saved
        clear()
