"""The requests API contract (DESIGN §5.2): creation, policy and input rules, execute and
cancel conflicts, results, list filters and pagination."""

from __future__ import annotations

import pytest

from agent33.auth.scopes import MULTIMODAL_READ, MULTIMODAL_WRITE
from multimodal.choices import RequestState
from multimodal.models import Artifact, MultimodalRequest, MultimodalResult
from tests.factories.multimodal import (
    ArtifactFactory,
    ImageArtifactFactory,
    MultimodalPolicyFactory,
    MultimodalRequestFactory,
    MultimodalResultFactory,
    png_bytes,
    wav_bytes,
)
from tests.multimodal.conftest import b64

URL = "/v1/multimodal/requests"
REQUEST_FIELDS = {
    "id", "tenant_id", "modality", "input_text", "input_artifact_id",
    "requested_timeout_seconds", "requested_by", "state", "result_id", "error_message",
    "provider", "created_at", "updated_at",
}
RESULT_FIELDS = {
    "id", "request_id", "state", "output_text", "output_artifact_id", "output_data",
    "started_at", "completed_at", "metadata",
}


def create(client, **body):
    return client.post(URL, body, format="json")


# --- creation and eager execution --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tts_request_executes_now_and_returns_completed_with_a_wav_result(client_a, tenant_a):
    response = create(client_a, modality="text_to_speech", input_text="Hello from the tests.",
                      requested_by="pytest")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == REQUEST_FIELDS
    assert body["id"].startswith("mmreq-")
    assert body["tenant_id"] == tenant_a.slug
    assert body["state"] == "completed"
    assert body["provider"] == "espeak"
    assert body["requested_timeout_seconds"] == 60
    assert body["requested_by"] == "pytest"
    assert body["input_artifact_id"] == "" and body["error_message"] == ""
    assert body["result_id"].startswith("mmres-")

    result = client_a.get(f"{URL}/{body['id']}/result").json()
    assert set(result) == RESULT_FIELDS
    assert result["id"] == body["result_id"] and result["request_id"] == body["id"]
    assert result["state"] == "completed"
    assert result["output_artifact_id"].startswith("artifact-")
    assert result["output_data"]["sample_rate"] > 0
    assert result["output_data"]["duration_seconds"] > 0.5
    meta = result["metadata"]
    assert meta["provider"] == "espeak" and meta["model"] == "espeak-ng"
    assert meta["attempts"] == 1 and meta["execution_attempts"] == 1
    assert isinstance(meta["latency_ms"], int)

    audio = client_a.get(f"/v1/multimodal/artifacts/{result['output_artifact_id']}/content")
    assert audio.status_code == 200
    assert audio["Content-Type"] == "audio/wav"
    assert b"".join(audio.streaming_content)[:4] == b"RIFF"


@pytest.mark.django_db
def test_execute_now_false_leaves_the_request_pending(client_a):
    response = create(client_a, modality="text_to_speech", input_text="later",
                      execute_now=False)
    assert response.status_code == 201
    assert response.json()["state"] == "pending"
    assert response.json()["result_id"] == ""
    missing = client_a.get(f"{URL}/{response.json()['id']}/result")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_execute_a_pending_request_then_conflicts(client_a):
    pending = create(client_a, modality="text_to_speech", input_text="one two three",
                     execute_now=False).json()
    executed = client_a.post(f"{URL}/{pending['id']}/execute")
    assert executed.status_code == 200, executed.content
    assert executed.json()["state"] == "completed"
    again = client_a.post(f"{URL}/{pending['id']}/execute")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"
    assert "completed" in again.json()["detail"]
    cancel = client_a.post(f"{URL}/{pending['id']}/cancel")
    assert cancel.status_code == 409
    assert "completed" in cancel.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["processing", "cancelled", "completed"])
def test_execute_conflicts(client_a, tenant_a, state):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, state=state)
    response = client_a.post(f"{URL}/{mm_request.pk}/execute")
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Request {mm_request.pk} is {state}; only pending or failed requests can be "
        "executed.",
        "code": "invalid_transition",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["completed", "failed"])
def test_cancel_conflicts(client_a, tenant_a, state):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, state=state)
    response = client_a.post(f"{URL}/{mm_request.pk}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    mm_request.refresh_from_db()
    assert mm_request.state == state


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["pending", "processing"])
def test_cancel_pending_or_processing(client_a, tenant_a, state):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, state=state)
    response = client_a.post(f"{URL}/{mm_request.pk}/cancel", {"reason": "not needed"},
                             format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    mm_request.refresh_from_db()
    assert mm_request.cancel_reason == "not needed"
    assert mm_request.cancelled_by.startswith("token:")
    # Cancelling again is harmless and changes nothing.
    again = client_a.post(f"{URL}/{mm_request.pk}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    assert not MultimodalResult.all_tenants.filter(request=mm_request).exists()


@pytest.mark.django_db
def test_a_failed_request_can_be_executed_again(client_a, tenant_a,
                                                django_capture_on_commit_callbacks):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, state=RequestState.FAILED,
                                          error_message="espeak: boom")
    MultimodalResultFactory(tenant=tenant_a, request=mm_request, state=RequestState.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(f"{URL}/{mm_request.pk}/execute")
    assert response.status_code == 200
    assert response.json()["error_message"] == ""
    assert client_a.get(f"{URL}/{mm_request.pk}").json()["state"] == "completed"
    results = MultimodalResult.all_tenants.filter(request=mm_request)
    assert [r.state for r in results] == ["completed"]


# --- input rules ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_stt_with_inline_base64_stores_the_input_as_an_artifact(client_a, tenant_a):
    data = wav_bytes(0.5)
    response = create(client_a, modality="speech_to_text", input_artifact_base64=b64(data),
                      execute_now=False)
    assert response.status_code == 201, response.content
    body = response.json()
    artifact = Artifact.all_tenants.get(pk=body["input_artifact_id"])
    assert artifact.tenant_id == tenant_a.slug
    assert artifact.content_type == "audio/wav" and artifact.origin == "inline"
    assert artifact.size_bytes == len(data)
    assert body["provider"] == "whisper-local"
    content = client_a.get(f"/v1/multimodal/artifacts/{artifact.pk}/content")
    assert b"".join(content.streaming_content) == data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"modality": "text_to_speech"}, "input_text", "missing_input"),
        ({"modality": "text_to_speech", "input_text": "   "}, "input_text", "missing_input"),
        ({"modality": "speech_to_text"}, "input_artifact_id", "missing_input"),
        ({"modality": "vision_analysis", "input_text": "what is this?"},
         "input_artifact_id", "missing_input"),
        ({"modality": "speech_to_text", "input_artifact_base64": "not base64!!"},
         "input_artifact_base64", "invalid_base64"),
        ({"modality": "speech_to_text", "input_artifact_base64": "QUJ"},
         "input_artifact_base64", "invalid_base64"),
        ({"modality": "speech_to_text", "input_artifact_id": "artifact-nope"},
         "input_artifact_id", "unknown_artifact"),
        ({"modality": "speech_to_text", "input_artifact_base64": b64(png_bytes())},
         "input_artifact_base64", "wrong_content_type"),
        ({"modality": "vision_analysis", "input_artifact_base64": b64(wav_bytes())},
         "input_artifact_base64", "wrong_content_type"),
        ({"modality": "speech_to_text", "input_artifact_base64": b64(b"just some text")},
         "input_artifact_base64", "wrong_content_type"),
        ({"modality": "text_to_speech", "input_text": "x", "input_artifact_base64": b64(b"x")},
         "input_artifact_base64", "unexpected_input"),
        ({"modality": "speech_to_text", "input_artifact_id": "a", "input_artifact_base64": "b"},
         "input_artifact_base64", "ambiguous_input"),
        ({"modality": "text_to_speech", "input_text": "x", "provider": "no-such-engine"},
         "provider", "unknown_provider"),
        ({"modality": "text_to_speech", "input_text": "x", "provider": "tesseract"},
         "provider", "provider_unsupported_modality"),
        ({"modality": "smell_to_text", "input_text": "x"}, "modality", "invalid"),
        ({"input_text": "x"}, "modality", "invalid"),
        ({"modality": "text_to_speech", "input_text": "x", "requested_timeout_seconds": 0},
         "requested_timeout_seconds", "invalid"),
        ({"modality": "text_to_speech", "input_text": "x", "requested_timeout_seconds": "soon"},
         "requested_timeout_seconds", "invalid"),
        ({"modality": "text_to_speech", "input_text": "x\u0000y"}, "input_text", "invalid"),
        ({"modality": "text_to_speech", "input_text": ["x"]}, "input_text", "invalid"),
        ({"modality": "text_to_speech", "input_text": "x", "execute_now": "perhaps"},
         "execute_now", "invalid"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client_a, body, field, code):
    response = create(client_a, **body)
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == code, error
    assert field in error["errors"], error
    assert field in error["detail"] or code in ("missing_input", "ambiguous_input",
                                                "unexpected_input", "wrong_content_type",
                                                "unknown_provider",
                                                "provider_unsupported_modality"), error
    assert not MultimodalRequest.all_tenants.exists()


@pytest.mark.django_db
def test_non_object_json_body_is_a_400(client_a):
    response = client_a.post(URL, '["text_to_speech"]', content_type="application/json")
    assert response.status_code == 400
    response = client_a.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.django_db
def test_another_tenants_artifact_is_a_400_like_a_missing_one(client_a, tenant_b):
    foreign = ArtifactFactory(tenant=tenant_b)
    response = create(client_a, modality="speech_to_text", input_artifact_id=foreign.pk)
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_artifact"
    assert foreign.pk in response.json()["detail"]


@pytest.mark.django_db
def test_artifact_of_the_wrong_kind_is_a_400(client_a, tenant_a):
    image = ImageArtifactFactory(tenant=tenant_a)
    response = create(client_a, modality="speech_to_text", input_artifact_id=image.pk)
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_content_type"
    assert "image/png" in response.json()["detail"]


# --- policy rules ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "body", "code", "field"),
    [
        ({"allowed_modalities": ["speech_to_text"]},
         {"modality": "text_to_speech", "input_text": "x"}, "modality_not_allowed", "modality"),
        ({"max_text_chars": 5},
         {"modality": "text_to_speech", "input_text": "123456"}, "max_text_chars", "input_text"),
        ({"max_timeout_seconds": 10},
         {"modality": "text_to_speech", "input_text": "x", "requested_timeout_seconds": 11},
         "max_timeout_seconds", "requested_timeout_seconds"),
        ({"max_artifact_bytes": 100},
         {"modality": "speech_to_text", "input_artifact_base64": b64(wav_bytes())},
         "max_artifact_bytes", "input_artifact_base64"),
    ],
)
def test_policy_violations_are_400s_naming_the_limit(client_a, tenant_a, policy, body, code,
                                                      field):
    MultimodalPolicyFactory(tenant=tenant_a, **policy)
    response = create(client_a, **body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == code
    assert list(error["errors"]) == [field]
    limit_name = "allowed_modalities" if code == "modality_not_allowed" else code
    assert limit_name in error["detail"]


@pytest.mark.django_db
def test_policy_checks_come_before_content_checks(client_a, tenant_a):
    MultimodalPolicyFactory(tenant=tenant_a, max_artifact_bytes=10, max_text_chars=3,
                            allowed_modalities=["speech_to_text"])
    # Too big AND not audio at all: the policy limit is what the caller hears about.
    not_audio = b64(b"this is plainly not an audio file at all")
    response = create(client_a, modality="speech_to_text", input_artifact_base64=not_audio)
    assert response.json()["code"] == "max_artifact_bytes"
    # A disallowed modality wins over missing input and a bad provider.
    response = create(client_a, modality="vision_analysis", provider="nope")
    assert response.json()["code"] == "modality_not_allowed"
    # An oversized stored artifact of the wrong kind: the size limit first.
    image = ImageArtifactFactory(tenant=tenant_a)
    response = create(client_a, modality="speech_to_text", input_artifact_id=image.pk)
    assert response.json()["code"] == "max_artifact_bytes"
    assert "input_artifact_id" in response.json()["errors"]
    # Invalid base64 that would also be too large: the policy limit first.
    response = create(client_a, modality="speech_to_text", input_artifact_base64="!" * 400)
    assert response.json()["code"] == "max_artifact_bytes"


@pytest.mark.django_db
def test_default_timeout_is_capped_by_the_policy(client_a, tenant_a):
    MultimodalPolicyFactory(tenant=tenant_a, max_timeout_seconds=20)
    response = create(client_a, modality="text_to_speech", input_text="x", execute_now=False)
    assert response.status_code == 201
    assert response.json()["requested_timeout_seconds"] == 20


@pytest.mark.django_db
def test_operator_tokens_cannot_create_requests(operator_client):
    response = create(operator_client, modality="text_to_speech", input_text="x")
    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"


# --- reading -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_filters_by_modality_and_state(client_a, tenant_a, tenant_b):
    tts_done = MultimodalRequestFactory(tenant=tenant_a, state="completed")
    tts_pending = MultimodalRequestFactory(tenant=tenant_a)
    stt = MultimodalRequestFactory(tenant=tenant_a, modality="speech_to_text",
                                   provider="whisper-local", state="failed")
    MultimodalRequestFactory(tenant=tenant_b, state="completed")

    def ids(query: str) -> set[str]:
        response = client_a.get(f"{URL}{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()}

    assert ids("") == {tts_done.pk, tts_pending.pk, stt.pk}
    assert ids("?modality=text_to_speech") == {tts_done.pk, tts_pending.pk}
    assert ids("?state=completed") == {tts_done.pk}
    assert ids("?modality=speech_to_text&state=failed") == {stt.pk}
    assert ids("?modality=text_to_speech&state=failed") == set()

    bad = client_a.get(f"{URL}?state=exploded")
    assert bad.status_code == 400
    assert "state" in bad.json()["errors"]
    assert client_a.get(f"{URL}?modality=telepathy").status_code == 400


@pytest.mark.django_db
def test_list_paginates_with_a_link_header(client_a, tenant_a):
    created = {MultimodalRequestFactory(tenant=tenant_a).pk for _ in range(5)}
    seen: list[str] = []
    url = f"{URL}?limit=2"
    while url:
        response = client_a.get(url)
        assert response.status_code == 200
        assert len(response.json()) <= 2
        seen += [row["id"] for row in response.json()]
        link = response.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
    assert len(seen) == 5 and set(seen) == created
    assert client_a.get(f"{URL}?limit=0").status_code == 400
    assert client_a.get(f"{URL}?limit=101").status_code == 400


@pytest.mark.django_db
def test_list_query_count_does_not_grow_with_rows(client_a, tenant_a,
                                                  django_assert_max_num_queries):
    for _ in range(3):
        MultimodalResultFactory(tenant=tenant_a)
    client_a.get(URL)  # warm the token's last-used stamp
    with django_assert_max_num_queries(3) as captured:
        first = client_a.get(URL)
    for _ in range(10):
        MultimodalResultFactory(tenant=tenant_a)
    with django_assert_max_num_queries(len(captured.captured_queries)):
        second = client_a.get(URL)
    assert len(first.json()) == 3 and len(second.json()) == 13
    assert all(row["result_id"].startswith("mmres-") for row in second.json())


@pytest.mark.django_db
def test_read_only_token_can_read_but_not_write(api_client_for, tenant_a):
    mm_request = MultimodalResultFactory(tenant=tenant_a).request
    reader = api_client_for(tenant_a, scopes=[MULTIMODAL_READ])
    assert reader.get(f"{URL}/{mm_request.pk}").status_code == 200
    assert reader.get(f"{URL}/{mm_request.pk}/result").status_code == 200
    denied = reader.post(f"{URL}/{mm_request.pk}/cancel")
    assert denied.status_code == 403
    assert denied.json()["detail"] == f"Missing required scope: {MULTIMODAL_WRITE}"


@pytest.mark.django_db
def test_operator_reads_any_tenants_request(operator_client, tenant_b):
    mm_request = MultimodalRequestFactory(tenant=tenant_b)
    response = operator_client.get(f"{URL}/{mm_request.pk}")
    assert response.status_code == 200
    assert response.json()["tenant_id"] == tenant_b.slug
