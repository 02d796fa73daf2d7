"""The embedded mode with real processes (`manage.py worker`, gunicorn) on a migrated
database of this pass's kind (an SQLite file, or PostgreSQL in the PostgreSQL pass): nothing
queued is lost when every process is SIGKILLed, a job past its time limit dies with the
processes it started, a failing job is tried again then failed, and the schedule runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from bench.common import ROOT, free_port, job_worker
from tests.jobs.conftest import alive, children_of, query, run_manage
from tests.workers import wait_for

pytestmark = pytest.mark.slow

DOMAINS = 3000
STATE = """
from collections import Counter
from django_tasks_db.models import DBTaskResult
from operations.models import ImprovementIntake
from outcomes.models import OutcomeTrendSnapshot
out = {
    "snapshots": OutcomeTrendSnapshot.all_tenants.count(),
    "intakes": list(ImprovementIntake.all_tenants.values_list("decline_key", flat=True)),
    "jobs": dict(Counter(DBTaskResult.objects.filter(
        task_path="outcomes.tasks.evaluate_declines").values_list("status", flat=True))),
}
"""


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "agent33.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30, message="gunicorn to start")
    return process, url


def start_worker(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--concurrency", "1", "--interval", "0.2"],
            cwd=ROOT, env={**env, **extra}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def event(domain: str, value: float, minute: int) -> dict:
    return {"metric_type": "success_rate", "domain": domain, "value": value,
            "event_type": "run",
            "occurred_at": f"2026-11-01T10:{minute:02d}:00Z"}


def test_nothing_queued_is_lost_when_every_process_is_killed(embedded_env, tmp_path):
    """A bulk of 3,000 domains with one declining: the web process is SIGKILLed right after
    its 201, the worker is SIGKILLed while it evaluates the first 1,000 keys (its job's
    process dies with it); a new worker evaluates every key, and the decline's intake
    opens exactly once."""
    env = embedded_env
    run_manage(env, "create_tenant", "acme")
    token = run_manage(env, "issue_token", "--tenant", "acme", "--scopes",
                       "outcomes:write").split()[-1]
    log = tmp_path / "worker.log"
    worker = start_worker(env, log, AGENT33_TEST_SLOW_EVALUATION_SECONDS="8")
    web, url = start_gunicorn(env)
    try:
        client = httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        for minute in range(4):
            assert client.post("/v1/outcomes/events",
                               json=event("svc-7", 1.0, minute)).status_code == 201
        events = [event(f"svc-{n}", 0.0 if n == 7 else 1.0, 10) for n in range(DOMAINS)]
        events += [event("svc-7", 0.0, 11 + n) for n in range(4)]
        answer = client.post("/v1/outcomes/events/bulk", json={"events": events})
        assert answer.status_code == 201, answer.text
        os.killpg(web.pid, signal.SIGKILL)  # right after it answered
        web.wait()

        wait_for(lambda: query(env, STATE)["jobs"].get("RUNNING"), timeout=60,
                 message="the worker to start an evaluation")
        job_processes = children_of(worker.pid)
        assert job_processes, "the evaluation runs in a process of its own"
        os.kill(worker.pid, signal.SIGKILL)  # the supervisor only: its job must die with it
        worker.wait()
        wait_for(lambda: not any(alive(pid) for pid in job_processes), timeout=10,
                 message="the job's process to die with its worker")
        killed = query(env, STATE)
        assert killed["intakes"] == [] and killed["snapshots"] < DOMAINS
        # One evaluation interrupted; the others done before it or still queued.
        assert killed["jobs"].get("RUNNING") == 1 and sum(killed["jobs"].values()) == 3

        worker = start_worker(env, log)  # the restart
        done = wait_for(lambda: (state := query(env, STATE))["jobs"] == {"SUCCESSFUL": 3}
                        and state, timeout=120, message="every evaluation to complete")
        assert done["snapshots"] == DOMAINS  # svc-0 .. svc-2999: every key evaluated
        assert done["intakes"] == ["success_rate:svc-7"]  # opened once
        retried = query(env, "from django_tasks_db.models import DBTaskResult\n"
                             "out = sorted(len(r.worker_ids) for r in DBTaskResult.objects"
                             ".filter(task_path='outcomes.tasks.evaluate_declines'))")
        assert retried == [1, 1, 2]  # the interrupted job ran again, once
    finally:
        for process in (web, worker):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert "agent33.jobs.WorkerLost; queued again" in log.read_text()


def test_a_job_past_its_time_limit_dies_with_the_processes_it_started(embedded_env,
                                                                      tmp_path):
    env = embedded_env
    pid_file = tmp_path / "pids"
    read = ("from django_tasks_db.models import DBTaskResult\n"
            "out = list(DBTaskResult.objects.filter(task_path__startswith='tests.')"
            ".values_list('status', 'traceback'))")
    query(env, "from agent33 import jobs\nfrom django.db import transaction\n"
               "with transaction.atomic():\n"
               f"    jobs.enqueue('tests.spawn_and_hang', pid_file={str(pid_file)!r})\nout = 1")
    with job_worker(env, concurrency=1):
        wait_for(pid_file.exists, timeout=30, message="the job to start its child")
        job_pid, child_pid = map(int, pid_file.read_text().split())
        assert alive(child_pid)
        # time_limit=2: the worker kills the job's process group, child included.
        wait_for(lambda: not alive(child_pid) and not alive(job_pid), timeout=20,
                 message="the job and its child to be killed")
        wait_for(lambda: query(env, read)[0][0] == "FAILED", timeout=20,
                 message="the job to be recorded failed")
    [(status, traceback)] = query(env, read)
    assert status == "FAILED"
    assert "tests.spawn_and_hang: time limit of 2 s exceeded" in traceback


def test_a_failing_job_is_tried_again_then_failed_with_its_error(embedded_env):
    env = embedded_env
    query(env, "from agent33 import jobs\nfrom django.db import transaction\n"
               "with transaction.atomic():\n"
               "    jobs.enqueue('tests.always_fails', reason='the receiver said no')\nout = 1")
    read = ("from django_tasks_db.models import DBTaskResult\n"
            "out = [(r.status, len(r.worker_ids), r.exception_class_path, r.traceback)"
            " for r in DBTaskResult.objects.filter(task_path__startswith='tests.')]")
    with job_worker(env, concurrency=1):
        wait_for(lambda: query(env, read)[0][0] == "FAILED", timeout=30,
                 message="the job to use its two tries")
    [(status, tries, kind, traceback)] = query(env, read)
    assert (status, tries, kind) == ("FAILED", 2, "builtins.RuntimeError")
    assert "RuntimeError: the receiver said no" in traceback


def test_the_worker_runs_the_schedule(embedded_env):
    """Every periodic job is due when a worker starts: a budget past its expiry is expired
    within seconds, with no command typed."""
    env = embedded_env
    budget = query(env, """
from datetime import timedelta
from django.utils import timezone
from agent33.tenancy.models import Tenant
from operations.models import AutonomyBudget
tenant = Tenant.objects.create(slug="acme", name="ACME")
budget = AutonomyBudget.all_tenants.create(
    tenant=tenant, task_id="t", agent_id="a", status="active",
    expires_at=timezone.now() - timedelta(seconds=5))
out = budget.pk
""")
    status = f"from operations.models import AutonomyBudget\n" \
             f"out = AutonomyBudget.all_tenants.get(pk={budget!r}).status"
    assert query(env, status) == "active"
    with job_worker(env, concurrency=2):
        wait_for(lambda: query(env, status) == "expired", timeout=30,
                 message="the schedule to expire the budget")
        ran = wait_for(lambda: (names := query(
            env, "from django_tasks_db.models import DBTaskResult\n"
                 "out = sorted(set(DBTaskResult.objects.filter(status='SUCCESSFUL')"
                 ".values_list('task_path', flat=True)))"))
            and len(names) == len(settings.AGENT33_SCHEDULE) and names,
            timeout=30, message="every periodic job to run once")
    assert ran == ["agent33.tasks.compact_row_counts", "agent33.tasks.prune_jobs",
                   "agent33.tasks.purge_idempotency_records",
                   "agent33.tasks.purge_rate_counters", "multimodal.tasks.reap_timeouts",
                   "operations.tasks.expire_budgets", "operations.tasks.prune_hub_events",
                   "outcomes.tasks.purge_expired_events", "webhooks.tasks.sweep"]


def test_a_create_waits_for_the_worker_and_wait_0_answers_at_once(embedded_env, tmp_path):
    """Through gunicorn (threads) and a worker: a text-to-speech create answers with the
    request the worker completed (woken by NOTIFY on PostgreSQL, polling on SQLite), and
    `?wait=0` answers `processing` at once while the worker completes it anyway."""
    env = embedded_env
    run_manage(env, "create_tenant", "acme")
    token = run_manage(env, "issue_token", "--tenant", "acme", "--scopes",
                       "multimodal:read,multimodal:write").split()[-1]
    web, url = start_gunicorn(env)
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        client = httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        body = {"modality": "text_to_speech", "input_text": "Waiting for the worker."}
        waited = client.post("/v1/multimodal/requests", json=body)
        assert waited.status_code == 201, waited.text
        assert waited.json()["state"] == "completed" and waited.json()["result_id"]

        at_once = client.post("/v1/multimodal/requests", params={"wait": "0"}, json=body)
        assert at_once.status_code == 201 and at_once.json()["state"] == "processing"
        request_id = at_once.json()["id"]
        wait_for(lambda: client.get(f"/v1/multimodal/requests/{request_id}").json()["state"]
                 == "completed", timeout=30, message="the worker to complete it")
    finally:
        for process in (web, worker):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
