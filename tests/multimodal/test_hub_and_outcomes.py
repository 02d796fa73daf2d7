"""Multimodal requests in the Operations Hub, and the outcome events they record (issue 8)."""

from __future__ import annotations

import pytest

from multimodal.models import MultimodalRequest
from multimodal.providers.base import (
    MODALITY_TEXT_TO_SPEECH,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from multimodal.providers.registry import register_provider, unregister_provider
from operations.models import ImprovementIntake, StatusChange
from outcomes.models import OutcomeEvent

pytestmark = pytest.mark.django_db


class BrokenTTS(Provider):
    """Stands in for a cloud provider that has started failing."""

    name = "test-broken-tts"
    modalities = frozenset({MODALITY_TEXT_TO_SPEECH})

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        raise ProviderError(self.name, "HTTP 503: upstream overloaded")


@pytest.fixture
def broken_provider():
    register_provider(BrokenTTS())
    yield BrokenTTS.name
    unregister_provider(BrokenTTS.name)


@pytest.fixture
def ops_and_mm(api_client_for, tenant_a):
    return api_client_for(
        tenant_a,
        scopes=["workflows:read", "workflows:execute", "multimodal:read", "multimodal:write"],
        name="console",
    )


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on-commit hooks (outcome events, decline evaluation) as a real commit would."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def create(client, execute_now=False, **body):
    payload = {"modality": "text_to_speech", "input_text": "hello there",
               "execute_now": execute_now, **body}
    response = client.post("/v1/multimodal/requests", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_the_hub_lists_multimodal_requests(ops_and_mm, tenant_a):
    mm_request = create(ops_and_mm, requested_timeout_seconds=45)
    body = ops_and_mm.get("/v1/operations/hub?include=multimodal").json()
    [row] = body["processes"]
    assert row["id"] == mm_request["id"]
    assert row["type"] == "multimodal_request"
    assert row["status"] == "pending"
    assert row["name"] == "text_to_speech (espeak)"
    assert row["metadata"] == {
        "tenant_id": "tenant-a", "modality": "text_to_speech", "provider": "espeak",
        "requested_timeout_seconds": 45,
    }
    assert row["allowed_actions"] == ["cancel"]
    assert body["active_count"] == 1
    everything = ops_and_mm.get("/v1/operations/hub").json()["processes"]
    assert mm_request["id"] in {p["id"] for p in everything}


def test_finished_requests_offer_no_control(ops_and_mm, committed):
    mm_request = committed(lambda: create(ops_and_mm, execute_now=True))
    rows = ops_and_mm.get("/v1/operations/hub?include=multimodal&status=completed").json()
    [row] = rows["processes"]
    assert row["id"] == mm_request["id"] and row["allowed_actions"] == []
    assert ops_and_mm.get("/v1/operations/hub?include=multimodal").json()["processes"] == []


def test_process_detail_of_a_request(ops_and_mm):
    mm_request = create(ops_and_mm)
    detail = ops_and_mm.get(f"/v1/operations/processes/{mm_request['id']}").json()
    assert detail["type"] == "multimodal_request"
    assert detail["input_text"] == "hello there"
    assert detail["history"] == [] and detail["control_history"] == []


def test_cancel_through_the_hub_uses_the_cancel_service_and_is_audited(ops_and_mm, committed):
    mm_request = create(ops_and_mm)
    response = committed(lambda: ops_and_mm.post(
        f"/v1/operations/processes/{mm_request['id']}/control",
        {"action": "cancel", "reason": "customer withdrew"}, format="json",
    ))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    stored = MultimodalRequest.all_tenants.get(pk=mm_request["id"])
    assert stored.state == "cancelled"
    assert stored.cancel_reason == "customer withdrew"
    [audit] = StatusChange.all_tenants.filter(process_id=mm_request["id"])
    assert (audit.action, audit.state_before, audit.state_after, audit.cause, audit.path) == (
        "cancel", "pending", "cancelled", "operator", "hub")
    assert audit.actor == stored.cancelled_by and audit.actor.startswith("token:a33_")
    assert audit.actor_name == "console" and audit.reason == "customer withdrew"
    # The multimodal API sees the same request cancelled.
    assert ops_and_mm.get(f"/v1/multimodal/requests/{mm_request['id']}").json()["state"] == (
        "cancelled")
    # Cancelling again changes nothing, as the multimodal API's own cancel does.
    again = ops_and_mm.post(f"/v1/operations/processes/{mm_request['id']}/control",
                            {"action": "cancel", "reason": "again"}, format="json")
    assert again.status_code == 200, again.content
    assert again.json()["status"] == "cancelled"
    assert MultimodalRequest.all_tenants.get(pk=mm_request["id"]).cancel_reason == (
        "customer withdrew")
    pause = ops_and_mm.post(f"/v1/operations/processes/{mm_request['id']}/control",
                            {"action": "pause"}, format="json")
    assert pause.status_code == 409
    assert pause.json()["code"] == "unsupported_action"


def test_another_tenant_cannot_see_or_cancel_a_request(ops_and_mm, api_client_for, tenant_b):
    mm_request = create(ops_and_mm)
    other = api_client_for(tenant_b, scopes=["workflows:read", "workflows:execute"])
    assert other.get("/v1/operations/hub?include=multimodal").json()["processes"] == []
    assert other.get(f"/v1/operations/processes/{mm_request['id']}").status_code == 404
    response = other.post(f"/v1/operations/processes/{mm_request['id']}/control",
                          {"action": "cancel"}, format="json")
    assert response.status_code == 404
    assert MultimodalRequest.all_tenants.get(pk=mm_request["id"]).state == "pending"


def events_of(tenant):
    return list(OutcomeEvent.all_tenants.filter(tenant=tenant).order_by("metric_type"))


def test_a_completed_request_records_success_and_latency(ops_and_mm, tenant_a, committed):
    mm_request = committed(lambda: create(ops_and_mm, execute_now=True))
    assert ops_and_mm.get(f"/v1/multimodal/requests/{mm_request['id']}").json()["state"] == (
        "completed")
    latency, success = events_of(tenant_a)
    assert (success.domain, success.event_type, success.value) == (
        "multimodal.text_to_speech", "espeak", 1.0)
    assert success.metadata == {"request_id": mm_request["id"], "state": "completed"}
    assert latency.metric_type == "latency_ms" and latency.value >= 0


def test_a_failed_request_records_a_zero_and_a_cancelled_one_nothing(
    ops_and_mm, tenant_a, committed, broken_provider
):
    failed = committed(lambda: create(ops_and_mm, execute_now=True, provider=broken_provider))
    failed = ops_and_mm.get(f"/v1/multimodal/requests/{failed['id']}").json()
    assert failed["state"] == "failed"
    assert failed["error_message"] == f"{broken_provider}: HTTP 503: upstream overloaded"
    pending = create(ops_and_mm)
    committed(lambda: ops_and_mm.post(f"/v1/multimodal/requests/{pending['id']}/cancel"))
    successes = OutcomeEvent.all_tenants.filter(tenant=tenant_a, metric_type="success_rate")
    assert {(e.event_type, e.value, e.metadata["state"]) for e in successes} == {
        (broken_provider, 0.0, "failed")}


def test_operator_cancels_never_open_a_decline(ops_and_mm, tenant_a, committed, admin_client):
    """The reproduction from issue 22: four completed requests, then operators cancel four
    more through the API, the hub and the admin. Before, each cancel recorded success_rate
    0 and the trend read "declining" with an intake opened; now cancels record nothing."""
    for _ in range(4):
        committed(lambda: create(ops_and_mm, execute_now=True))
    to_cancel = [create(ops_and_mm) for _ in range(4)]
    committed(lambda: ops_and_mm.post(f"/v1/multimodal/requests/{to_cancel[0]['id']}/cancel"))
    for mm_request in to_cancel[1:3]:
        committed(lambda mm_request=mm_request: ops_and_mm.post(
            f"/v1/operations/processes/{mm_request['id']}/control", {"action": "cancel"},
            format="json"))
    committed(lambda: admin_client.post("/admin/multimodal/multimodalrequest/", {
        "action": "cancel_requests", "_selected_action": [to_cancel[3]["id"]]}))
    assert set(MultimodalRequest.all_tenants.filter(
        pk__in=[r["id"] for r in to_cancel]).values_list("state", flat=True)) == {"cancelled"}
    successes = OutcomeEvent.all_tenants.filter(tenant=tenant_a, metric_type="success_rate")
    assert sorted(e.value for e in successes) == [1.0] * 4
    # (The real engine's latency jitter may move the latency trend; this is about success.)
    assert not ImprovementIntake.all_tenants.filter(
        tenant=tenant_a, decline_key="success_rate:multimodal.text_to_speech").exists()
    paths = StatusChange.all_tenants.filter(action="cancel").values_list("path", flat=True)
    assert sorted(paths) == ["admin", "api", "hub", "hub"]


def test_a_provider_that_starts_failing_opens_an_intake(ops_and_mm, tenant_a, committed,
                                                        broken_provider, monkeypatch):
    # Both providers feed one domain trend; the broken one's failures make it decline.
    # (Latency jitter of the real engine may open a latency_ms intake too; this test is about
    # the success rate.)
    success_key = "success_rate:multimodal.text_to_speech"
    for _ in range(4):
        committed(lambda: create(ops_and_mm, execute_now=True))
    assert not ImprovementIntake.all_tenants.filter(decline_key=success_key).exists()
    for _ in range(4):
        committed(lambda: create(ops_and_mm, execute_now=True, provider=broken_provider))
    [intake] = ImprovementIntake.all_tenants.filter(tenant=tenant_a, decline_key=success_key)
    assert intake.title == "success_rate declining in multimodal.text_to_speech"
    assert intake.urgency == "high"
    hub = ops_and_mm.get("/v1/operations/hub?include=improvements").json()["processes"]
    assert intake.pk in [p["id"] for p in hub]
