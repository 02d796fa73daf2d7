"""Real `celery worker` processes on PostgreSQL + Redis: execute_now through a broker, a
worker killed mid-job (kill -9) and restarted, the reaper, and cancel during processing.

The workers run tests.multimodal.worker_settings (project settings + the test-only slow
provider + a 2 s broker visibility timeout) against this test's database; rows are visible
to them because these tests commit (transaction=True).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from multimodal import services
from multimodal.models import Artifact, MultimodalResult
from tests.conftest import CELERY_JOBS
from tests.multimodal import slow_provider  # noqa: F401  (registers test-slow here too)
from tests.workers import publishing_jobs_to, start_celery_worker, wait_for

BROKER = "redis://127.0.0.1:6379/5"
# One Redis key space per pytest(-xdist) process: parallel runs must not share a queue.
KEY_PREFIX = f"mmtest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
REQUESTS = "/v1/multimodal/requests"

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres,
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker(require_postgres, require_redis, settings) -> Iterator[None]:
    """This process publishes jobs to Redis (the scaled-out mode)."""
    settings.TASKS = CELERY_JOBS
    with publishing_jobs_to(BROKER, KEY_PREFIX):
        yield


@pytest.fixture
def slow_log(tmp_path) -> Path:
    return tmp_path / "slow-provider.log"


@pytest.fixture
def spawn_worker(broker, slow_log, tmp_path):
    """spawn_worker() → a running worker (stopped at the end of the test)."""
    processes: list[subprocess.Popen] = []

    def spawn() -> subprocess.Popen:
        process = start_celery_worker(
            BROKER,
            log_path=tmp_path / f"worker-{len(processes)}.log",
            DJANGO_SETTINGS_MODULE="tests.multimodal.worker_settings",
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            SLOW_PROVIDER_LOG=str(slow_log),
            MULTIMODAL_TEST_BROKER_PREFIX=KEY_PREFIX,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            kill_9(process)  # nothing to shut down gracefully; its Redis keys are cleared


def kill_9(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the worker and anything it started
    process.wait(timeout=10)


def events(log: Path) -> list[str]:
    return log.read_text().split()[::2] if log.exists() else []


def poll_state(client, request_id: str, states: set[str], timeout: float = 60) -> dict:
    """Poll the API like a client would until the request reaches one of `states`."""
    def reached():
        body = client.get(f"{REQUESTS}/{request_id}").json()
        return body if body["state"] in states else None

    return wait_for(reached, timeout=timeout, message=f"{request_id} to become {states}")


@contextmanager
def diagnostics(process: subprocess.Popen):
    try:
        yield
    except AssertionError:
        print(Path(process.log_path).read_text()[-4000:])  # shown on failure only
        raise


def create(client, **body) -> dict:
    response = client.post(REQUESTS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_worker_completes_execute_now_requests_and_clients_poll(client_a, spawn_worker):
    worker = spawn_worker()
    with diagnostics(worker):
        created = create(client_a, modality="text_to_speech",
                         input_text="Open the door and turn on the light.")
        assert created["state"] == "processing"  # wait 0 (tests): answered at once
        done = poll_state(client_a, created["id"], {"completed", "failed"})
        assert done["state"] == "completed", done
        result = client_a.get(f"{REQUESTS}/{created['id']}/result").json()
        audio = client_a.get(f"/v1/multimodal/artifacts/{result['output_artifact_id']}/content")
        assert b"".join(audio.streaming_content)[:4] == b"RIFF"


def test_killed_worker_job_completes_exactly_once_after_restart(client_a, spawn_worker,
                                                                 slow_log):
    first = spawn_worker()
    created = create(client_a, modality="text_to_speech", input_text="sleep 2",
                     provider="test-slow")
    with diagnostics(first):
        wait_for(lambda: events(slow_log) == ["start"], timeout=60, message="the job to start")
    kill_9(first)
    assert client_a.get(f"{REQUESTS}/{created['id']}").json()["state"] == "processing"

    second = spawn_worker()
    with diagnostics(second):
        done = poll_state(client_a, created["id"], {"completed", "failed"})
        assert done["state"] == "completed", done
    assert events(slow_log) == ["start", "start", "end"]
    [result] = MultimodalResult.all_tenants.filter(request_id=created["id"])
    assert result.metadata["execution_attempts"] == 2


def test_reaper_fails_a_request_past_its_deadline_and_the_late_result_is_dropped(
        client_a, spawn_worker, slow_log):
    worker = spawn_worker()
    with diagnostics(worker):
        created = create(client_a, modality="text_to_speech", input_text="sleep 2.5",
                         provider="test-slow", requested_timeout_seconds=1)
        wait_for(lambda: events(slow_log) == ["start"], timeout=60, message="the job to start")
        reaped = wait_for(lambda: services.reap_timeouts(grace_seconds=0), timeout=10,
                          message="the reaper to fail the request")
        assert reaped == [created["id"]]
        failed = client_a.get(f"{REQUESTS}/{created['id']}").json()
        assert failed["state"] == "failed"
        assert failed["error_message"] == "timed out after 1 s"
        wait_for(lambda: events(slow_log) == ["start", "end"], timeout=30,
                 message="the slow job to end")
        # The worker finished late: it must leave the failed request (and its result) alone.
        wait_for(lambda: "discarded" in Path(worker.log_path).read_text(), timeout=10,
                 message="the worker to discard the late output")
    assert client_a.get(f"{REQUESTS}/{created['id']}").json()["state"] == "failed"
    assert [r.state for r in MultimodalResult.all_tenants.filter(request_id=created["id"])] \
        == ["failed"]
    assert not Artifact.all_tenants.filter(origin="output").exists()


def test_cancel_during_processing_wins_over_the_late_result(client_a, spawn_worker, slow_log):
    worker = spawn_worker()
    with diagnostics(worker):
        created = create(client_a, modality="text_to_speech", input_text="sleep 1.5",
                         provider="test-slow")
        wait_for(lambda: events(slow_log) == ["start"], timeout=60, message="the job to start")
        cancelled = client_a.post(f"{REQUESTS}/{created['id']}/cancel", {"reason": "too slow"},
                                  format="json")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        wait_for(lambda: "discarded" in Path(worker.log_path).read_text(), timeout=30,
                 message="the worker to discard the late output")
    assert client_a.get(f"{REQUESTS}/{created['id']}").json()["state"] == "cancelled"
    assert client_a.get(f"{REQUESTS}/{created['id']}/result").status_code == 404
    assert not Artifact.all_tenants.filter(origin="output").exists()
