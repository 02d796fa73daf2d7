"""A create or execute waits for the worker up to a bound (`?wait=`, default
AGENT33_MULTIMODAL_WAIT_SECONDS): engine work is queued, never run by the web process.
The waits themselves, against a real worker, are in tests/jobs/test_worker_processes.py."""

from __future__ import annotations

import json

import pytest
from django_tasks_db.models import DBTaskResult

from agent33.jobs.worker import run_ready_jobs
from multimodal.models import MultimodalRequest, MultimodalResult
from tests.factories.multimodal import MultimodalRequestFactory

URL = "/v1/multimodal/requests"
TTS = {"modality": "text_to_speech", "input_text": "Queued, not spoken here."}


@pytest.mark.django_db(transaction=True)
def test_the_web_process_queues_engine_work_and_the_worker_runs_it(client_a, database_jobs,
                                                                   settings):
    settings.AGENT33_MULTIMODAL_WAIT_SECONDS = 0.2  # no worker in this test: it runs out
    response = client_a.post(URL, TTS, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["result_id"]) == ("processing", "")
    assert MultimodalResult.all_tenants.count() == 0  # nothing ran in this process
    [job] = DBTaskResult.objects.filter(task_path="multimodal.tasks.execute_request")
    assert job.status == "READY" and job.args_kwargs["kwargs"]["request_id"] == body["id"]
    assert job.args_kwargs["kwargs"]["_job"]["tenant_id"] == "tenant-a"

    assert run_ready_jobs() == ["successful"]  # the worker's turn
    done = client_a.get(f"{URL}/{body['id']}").json()
    assert done["state"] == "completed" and done["result_id"]


@pytest.mark.django_db(transaction=True)
def test_wait_0_answers_at_once_and_execute_waits_too(client_a, database_jobs, tenant_a):
    response = client_a.post(f"{URL}?wait=0", TTS, format="json")
    assert response.json()["state"] == "processing"
    pending = MultimodalRequestFactory(tenant=tenant_a, modality="text_to_speech",
                                       input_text="later")
    executed = client_a.post(f"{URL}/{pending.pk}/execute?wait=0")
    assert executed.status_code == 200 and executed.json()["state"] == "processing"
    assert DBTaskResult.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_request_that_ended_is_answered_without_waiting(client_a):
    """The in-process test backend ran the job when the create committed: a long wait
    answers with the final state (it never sleeps for a request that is not processing)."""
    response = client_a.post(f"{URL}?wait=60", TTS, format="json")
    assert response.status_code == 201 and response.json()["state"] == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["", "soon", "-1", "60.5", "nan", "inf", "1e9"])
def test_a_bad_wait_is_a_400_naming_it_and_creates_nothing(client_a, tenant_a, value):
    response = client_a.post(f"{URL}?wait={value}", TTS, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "wait must be a number of seconds from 0 to 60.", "code": "invalid_wait",
        "errors": {"wait": ["wait must be a number of seconds from 0 to 60."]}}
    assert MultimodalRequest.all_tenants.count() == 0
    pending = MultimodalRequestFactory(tenant=tenant_a)
    executed = client_a.post(f"{URL}/{pending.pk}/execute?wait={value}")
    assert executed.status_code == 400 and executed.json()["code"] == "invalid_wait"
    pending.refresh_from_db()
    assert pending.state == "pending"


@pytest.mark.django_db
def test_the_schema_documents_wait_on_create_and_execute(client):
    schema = json.loads(client.get("/v1/schema/", HTTP_ACCEPT="application/json").content)
    for path in (URL, f"{URL}/{{id}}/execute"):
        [wait] = [p for p in schema["paths"][path]["post"]["parameters"] if p["name"] == "wait"]
        assert wait["in"] == "query" and wait["schema"]["type"] == "number"
        assert "processing" in wait["description"]


@pytest.mark.django_db(transaction=True)
def test_at_most_the_configured_number_of_requests_wait_per_process(
        client_a, database_jobs, settings, monkeypatch):
    """Each waiting request holds a server thread: beyond AGENT33_MULTIMODAL_MAX_WAITING
    waiting at once, a create answers `processing` at once instead of taking another."""
    from agent33.jobs import waiting
    from multimodal import selectors

    waits = []
    monkeypatch.setattr(waiting, "wait_until", lambda check, **kw: waits.append(kw))
    settings.AGENT33_MULTIMODAL_WAIT_SECONDS = 30
    settings.AGENT33_MULTIMODAL_MAX_WAITING = 1
    assert client_a.post(URL, TTS, format="json").json()["state"] == "processing"
    assert len(waits) == 1  # a free slot: it waited

    slots = selectors._waiting_slots()
    assert slots.acquire(blocking=False)  # another request of this process is waiting
    try:
        response = client_a.post(URL, TTS, format="json")
        assert response.status_code == 201 and response.json()["state"] == "processing"
    finally:
        slots.release()
    settings.AGENT33_MULTIMODAL_MAX_WAITING = 0
    assert client_a.post(URL, TTS, format="json").json()["state"] == "processing"
    assert len(waits) == 1  # neither of the last two waited
