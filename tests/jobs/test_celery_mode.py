"""The scaled-out mode with real processes: Celery worker and beat on Redis, PostgreSQL.
The same jobs and schedule as the embedded mode: beat runs the budget sweep, a failing job
is retried with its backoff, then recorded FAILED in the jobs table, where staff and
/metrics see failed jobs in both modes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from agent33 import jobs
from tests.conftest import CELERY_JOBS
from tests.factories.operations import AutonomyBudgetFactory
from tests.jobs.slow_jobs import tasks as test_jobs  # noqa: F401  (registers them here)
from tests.workers import (
    ROOT,
    celery_worker,
    publishing_jobs_to,
    stop_process,
    wait_for,
    worker_env,
)

BROKER = "redis://127.0.0.1:6379/3"
KEY_PREFIX = f"jobstest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
SETTINGS = "tests.jobs.celery_settings"

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres,
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scaled_out(require_postgres, require_redis, settings) -> Iterator[None]:
    """This process queues jobs on Redis, as web processes do with CELERY_BROKER_URL."""
    settings.TASKS = CELERY_JOBS
    with publishing_jobs_to(BROKER, KEY_PREFIX):
        yield


def test_beat_and_the_worker_run_the_schedule(scaled_out, tenant_a, tmp_path):
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="active",
                                   expires_at=timezone.now() - timedelta(seconds=1))
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS, "JOBS_TEST_BROKER_PREFIX": KEY_PREFIX}
    with open(tmp_path / "beat.log", "wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "agent33", "beat", "--loglevel=INFO",
             f"--schedule={tmp_path / 'beat-schedule'}"],
            cwd=ROOT, env=worker_env(BROKER, **env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        with celery_worker(BROKER, log_path=tmp_path / "worker.log", **env):
            wait_for(lambda: type(budget).all_tenants.get(pk=budget.pk).status == "expired",
                     timeout=90, message="beat and the worker to expire the budget")
    finally:
        stop_process(beat)


def test_a_failing_job_is_retried_then_recorded_failed(scaled_out, tmp_path):
    with celery_worker(BROKER, log_path=tmp_path / "worker.log",
                       DJANGO_SETTINGS_MODULE=SETTINGS, JOBS_TEST_BROKER_PREFIX=KEY_PREFIX):
        with transaction.atomic():
            jobs.enqueue("tests.always_fails", reason="the receiver said no")
        row = wait_for(lambda: DBTaskResult.objects.filter(status="FAILED").first(),
                       timeout=90, message="the job to use its two tries")
    assert row.task_path == "tests.jobs.slow_jobs.tasks.always_fails"
    assert len(row.worker_ids) == 2  # two tries: the first, and one retry after its backoff
    assert row.exception_class_path == "builtins.RuntimeError"
    assert "the receiver said no" in row.traceback
    assert row.args_kwargs["kwargs"]["reason"] == "the receiver said no"
    log = (tmp_path / "worker.log").read_text()
    assert "Retry in" in log
