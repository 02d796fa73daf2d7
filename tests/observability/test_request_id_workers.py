"""A request's id travels into the Celery task it enqueues and onto the worker's log lines
(a real `celery worker` on a real Redis broker, PostgreSQL)."""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings

from agent33.celery import app as celery_app
from multimodal.models import MultimodalRequest
from tests.conftest import CELERY_JOBS
from tests.workers import celery_worker, wait_for

BROKER = "redis://127.0.0.1:6379/7"

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres,
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def publish_to_redis(require_postgres, require_redis, settings):
    """This process publishes jobs to Redis (db 7): the scaled-out mode."""
    settings.TASKS = CELERY_JOBS
    redis.Redis.from_url(BROKER).flushdb()
    conf = celery_app.conf
    saved = conf.broker_url

    def reset_pools() -> None:
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    reset_pools()
    conf.broker_url = BROKER
    yield
    reset_pools()
    conf.broker_url = saved
    redis.Redis.from_url(BROKER).flushdb()


def test_the_worker_logs_the_task_under_the_request_id(publish_to_redis, client_a, tmp_path):
    log_path = tmp_path / "worker.log"
    with celery_worker(BROKER, log_path=log_path, AGENT33_LOG_FORMAT="json",
                       MEDIA_ROOT=str(settings.MEDIA_ROOT)):
        response = client_a.post(
            "/v1/multimodal/requests",
            {"modality": "text_to_speech", "input_text": "follow me", "provider": "espeak"},
            format="json", HTTP_X_REQUEST_ID="trace-into-worker.42",
        )
        assert response.status_code == 201, response.content
        assert response["X-Request-ID"] == "trace-into-worker.42"
        request_id = response.json()["id"]
        wait_for(
            lambda: MultimodalRequest.all_tenants.get(pk=request_id).state == "completed",
            timeout=120, message="the worker to complete the request",
        )
        wait_for(lambda: f"multimodal request {request_id}" in log_path.read_text(),
                 timeout=10, message="the worker's log line")

    lines = []
    for raw in log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # Celery's start-up banner is printed, not logged
    task_lines = [line for line in lines
                  if line["message"] == f"multimodal request {request_id}: completed"]
    assert len(task_lines) == 1, log_path.read_text()[-3000:]
    assert task_lines[0]["request_id"] == "trace-into-worker.42"
    assert task_lines[0]["logger"] == "agent33.multimodal"
    # The worker's own lines outside any task carry none.
    ready = [line for line in lines if line["message"].endswith(" ready.")]
    assert ready and ready[0]["request_id"] is None
