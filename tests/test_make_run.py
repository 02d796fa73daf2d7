"""`make run`: one command starts the server and a background worker (which runs jobs and
the schedule); Ctrl-C, sent to the command's process group as a terminal sends it, stops
every process it started. A real `make`, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from bench.common import ROOT, free_port
from tests.jobs.conftest import alive, children_of, query, run_manage
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_make_run_serves_runs_the_worker_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
           "MEDIA_ROOT": str(tmp_path / "media"), "DJANGO_SETTINGS_MODULE": "agent33.settings"}
    for name in ("CELERY_BROKER_URL", "REDIS_URL", "CACHE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    with open(tmp_path / "run.log", "wb") as log:
        make = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def serving() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout=240, message="make run to serve")
        # The worker is up: the schedule's jobs ran (budget expiry, reaper, purges).
        done = ("from django_tasks_db.models import DBTaskResult\n"
                "out = DBTaskResult.objects.filter(status='SUCCESSFUL').count()")
        wait_for(lambda: query(env, done) >= 4, timeout=60,
                 message="the worker to run the schedule")
        # Engine work ran in the worker's job process; its series reach the server's
        # /metrics (the spend of the espeak request, priced per compute second).
        operator = run_manage(env, "issue_token", "--all-tenants", "--scopes",
                              "metrics:read").split()[-1]
        writer = run_manage(env, "issue_token", "--tenant", "demo", "--scopes",
                            "multimodal:write").split()[-1]
        created = httpx.post(f"http://127.0.0.1:{port}/v1/multimodal/requests",
                             json={"modality": "text_to_speech", "input_text": "Hello."},
                             headers={"Authorization": f"Bearer {writer}"}, timeout=60)
        assert created.status_code == 201 and created.json()["state"] == "completed"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30,
                            headers={"Authorization": f"Bearer {operator}"}).text
        assert 'agent33_multimodal_spend_usd_total{modality="text_to_speech",' \
               'provider="espeak"}' in metrics
        started = descendants(make.pid)
        commands = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started
                    if alive(pid)}
        assert any(b"runserver" in c for c in commands)
        assert any(b"manage.py\x00worker" in c for c in commands)

        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
        make.wait(timeout=60)
        wait_for(lambda: not any(alive(pid) for pid in started), timeout=30,
                 message="every process make run started to stop")
    finally:
        for pid in descendants(make.pid) | {make.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        make.wait()
