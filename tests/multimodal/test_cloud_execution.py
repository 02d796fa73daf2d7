"""Cloud providers end to end through the API: the tenant admin stores the key, an operator
token points it at a real loopback server (pytest-httpserver) speaking the OpenAI or
ElevenLabs wire format, and requests run through the eager task like any other. Plus the
resolution order (requested > tenant default > platform env > offline) and the ways a
request must fail clearly instead of falling back."""

from __future__ import annotations

import io
import json
import time
import wave

import pytest
from cryptography.fernet import Fernet
from werkzeug import Request, Response

from agent33.tenancy.context import tenant_scope
from multimodal import provider_fakes, provider_keys
from multimodal.models import (
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
    ProviderCredential,
)
from multimodal.providers import http as provider_http
from multimodal.providers.audio import pcm16_to_wav
from multimodal.resolution import provider_call_for
from tests.factories.multimodal import MultimodalRequestFactory
from tests.multimodal.conftest import CLOUD_KEY as KEY
from tests.multimodal.conftest import b64, keys_url

pytestmark = pytest.mark.django_db

REQUESTS = "/v1/multimodal/requests"
PLATFORM_KEY = "sk-platform-PLAINTEXT-99887766554433"


@pytest.fixture(autouse=True)
def _seeded_prices(prices):
    return prices


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(provider_http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(provider_http, "BACKOFF_MAX_SECONDS", 0.05)


def store_key(tenant, **fields) -> ProviderCredential:
    """A stored key, set in the tenant's own scope as its admin's API call would."""
    with tenant_scope(tenant):
        return provider_keys.credential_set(tenant=tenant, actor="t", **fields)


def wav(seconds: float = 0.25, rate: int = 24000) -> bytes:
    return pcm16_to_wav(b"\x01\x00" * int(rate * seconds), rate)


def png() -> bytes:
    from tests.factories.multimodal import png_bytes

    return png_bytes()


def artifact_bytes(client, artifact_id: str) -> bytes:
    response = client.get(f"/v1/multimodal/artifacts/{artifact_id}/content")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def assert_no_key(*texts: object) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text)
        assert KEY not in dumped and PLATFORM_KEY not in dumped


# --- success for each modality ----------------------------------------------------------


def test_openai_text_to_speech_stores_the_audio_as_an_artifact(client_a, configure, cloud, run):
    configure("openai", default_model="text_to_speech=tts-1-hd")
    audio = wav(0.5)
    received = provider_fakes.openai_speech(cloud, audio=audio)

    mm_request, result = run(client_a, modality="text_to_speech", input_text="Hello from the cloud")
    assert mm_request["state"] == "completed", mm_request
    assert mm_request["provider"] == "openai"  # the tenant's default: it stored an OpenAI key
    assert received.requests == [{
        "authorization": f"Bearer {KEY}",
        "json": {"model": "tts-1-hd", "input": "Hello from the cloud", "voice": "alloy",
                 "response_format": "wav"},
    }]
    assert artifact_bytes(client_a, result["output_artifact_id"]) == audio
    meta = result["metadata"]
    assert meta["provider"] == "openai" and meta["model"] == "tts-1-hd"
    assert meta["attempts"] == 1 and isinstance(meta["latency_ms"], int)
    # OpenAI bills speech per input character: 20 at tts-1-hd's $30 per million.
    assert (meta["usage"], meta["usage_source"]) == ({"characters": 20}, "input")
    assert meta["cost_usd"] == "0.0006"
    assert meta["price"]["usd_per_unit"] == {"characters": "0.00003"}
    assert result["output_data"]["duration_seconds"] == 0.5
    assert_no_key(mm_request, result)


def test_openai_speech_to_text_stores_the_transcript(client_a, configure, cloud, run):
    configure("openai")
    received = provider_fakes.openai_transcription(
        cloud, text="the quick brown fox", usage={"type": "duration", "seconds": 2}
    )
    audio = wav(0.3, 16000)
    mm_request, result = run(client_a, modality="speech_to_text", provider="openai",
                             input_artifact_base64=b64(audio))
    assert mm_request["state"] == "completed", mm_request
    assert result["output_text"] == "the quick brown fox"
    assert result["metadata"]["model"] == "whisper-1"
    # whisper-1's own report, 2 s at $0.006 a minute.
    assert result["metadata"]["usage"] == {"audio_seconds": 2}
    assert result["metadata"]["usage_source"] == "provider"
    assert result["metadata"]["cost_usd"] == "0.0002"
    sent = received.last
    assert (sent["authorization"], sent["model"], sent["audio"]) == (
        f"Bearer {KEY}", "whisper-1", audio)
    # Stored with the request's result, readable later.
    stored = MultimodalResult.all_tenants.get(request_id=mm_request["id"])
    assert stored.output_text == "the quick brown fox"


def test_openai_vision_answers_the_question_about_the_image(client_a, configure, cloud, run):
    configure("openai")
    image = png()
    received = provider_fakes.openai_chat_vision(
        cloud, reply="A red square.",
        usage={"prompt_tokens": 90, "completion_tokens": 4, "total_tokens": 94},
    )
    mm_request, result = run(client_a, modality="vision_analysis",
                             input_text="What colour is it?", input_artifact_base64=b64(image))
    assert mm_request["state"] == "completed", mm_request
    assert result["output_text"] == "A red square."
    assert result["metadata"]["usage"] == {"input_tokens": 90, "output_tokens": 4}
    # 90 x $0.15 + 4 x $0.60 per million tokens.
    assert result["metadata"]["cost_usd"] == "0.0000159"
    sent = received.last
    assert (sent["model"], sent["prompt"], sent["image"]) == (
        "gpt-4o-mini", "What colour is it?", image)


def test_elevenlabs_text_to_speech(client_a, configure, cloud, run):
    configure("elevenlabs", path="/")
    pcm = b"\x02\x00" * 16000  # one second at 16 kHz
    received = provider_fakes.elevenlabs_speech(cloud, pcm=pcm, character_cost=7)

    mm_request, result = run(client_a, modality="text_to_speech", input_text="Bonjour")
    assert mm_request["state"] == "completed", mm_request
    assert mm_request["provider"] == "elevenlabs"
    assert received.requests == [{
        "api_key": KEY, "output_format": "pcm_16000",
        "json": {"text": "Bonjour", "model_id": "eleven_multilingual_v2"},
    }]
    stored = artifact_bytes(client_a, result["output_artifact_id"])
    with wave.open(io.BytesIO(stored)) as audio:
        assert audio.getframerate() == 16000 and audio.getnframes() == 16000
    # ElevenLabs' character-cost header, at $0.10 per 1,000 characters.
    assert result["metadata"]["usage"] == {"characters": 7}
    assert result["metadata"]["usage_source"] == "provider"
    assert result["metadata"]["cost_usd"] == "0.0007"
    assert result["metadata"]["model"] == "eleven_multilingual_v2"


# --- flaky and failing providers ---------------------------------------------------------


def test_a_401_fails_at_once_naming_provider_and_status_without_the_key(
    client_a, configure, cloud, run
):
    configure("openai")
    # Providers echo (parts of) the key back; OpenAI's 401 does. The message must not.
    error = {"error": {"message": f"Incorrect API key provided: {KEY}.",
                       "type": "invalid_request_error", "code": "invalid_api_key"}}
    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_json(error, status=401)

    mm_request, result = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "failed"
    message = mm_request["error_message"]
    assert message.startswith("openai:") and "HTTP 401" in message
    assert "Incorrect API key provided" in message and "[redacted]" in message
    assert "1 attempt" in message
    assert len(cloud.log) == 1  # no retry for a 401
    assert result["state"] == "failed" and result["output_artifact_id"] == ""
    assert_no_key(mm_request, result, message)


def test_429_with_retry_after_then_success_records_two_attempts(client_a, configure, cloud, run):
    configure("openai")
    cloud.expect_oneshot_request("/v1/audio/speech", method="POST").respond_with_json(
        {"error": {"message": "Rate limit reached"}}, status=429, headers={"Retry-After": "1"}
    )
    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_data(
        wav(), content_type="audio/wav"
    )
    started = time.monotonic()
    mm_request, result = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "completed", mm_request
    assert result["metadata"]["attempts"] == 2
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert len(cloud.log) == 2


def test_persistent_5xx_fails_after_the_allowed_attempts(client_a, configure, cloud, run):
    configure("openai")
    cloud.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        {"error": {"message": "upstream overloaded"}}, status=500
    )
    mm_request, _ = run(client_a, modality="vision_analysis", input_artifact_base64=b64(png()))
    assert mm_request["state"] == "failed"
    assert "HTTP 500: upstream overloaded" in mm_request["error_message"]
    assert f"({provider_http.MAX_ATTEMPTS} attempts); giving up" in mm_request["error_message"]
    assert len(cloud.log) == provider_http.MAX_ATTEMPTS
    result = client_a.get(f"/v1/multimodal/requests/{mm_request['id']}/result").json()
    assert result["metadata"]["attempts"] == provider_http.MAX_ATTEMPTS


def test_an_unexpected_response_format_fails_clearly(client_a, configure, cloud, run):
    configure("openai")
    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_json({"ok": True})
    mm_request, result = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "failed"
    assert "unexpected response from openai: expected WAV audio" in mm_request["error_message"]
    assert result["output_artifact_id"] == ""


# --- keys: tenant, platform, none --------------------------------------------------------


def test_the_platform_key_serves_tenants_without_their_own(client_a, cloud, run, settings):
    settings.OPENAI_API_KEY = PLATFORM_KEY
    settings.OPENAI_BASE_URL = cloud.url_for("/v1")
    cloud.expect_request("/v1/audio/speech", method="POST",
                         headers={"Authorization": f"Bearer {PLATFORM_KEY}"}
                         ).respond_with_data(wav(), content_type="audio/wav")
    mm_request, _ = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["provider"] == "openai"  # the platform default, from the environment
    assert mm_request["state"] == "completed", mm_request


def test_a_tenant_key_wins_over_the_platform_key(client_a, configure, cloud, run, settings):
    settings.OPENAI_API_KEY = PLATFORM_KEY
    configure("openai")
    cloud.expect_request("/v1/audio/speech", method="POST",
                         headers={"Authorization": f"Bearer {KEY}"}
                         ).respond_with_data(wav(), content_type="audio/wav")
    mm_request, _ = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "completed", mm_request


def test_a_cloud_provider_without_any_key_is_refused_at_create(client_a, tenant_a):
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "hi",
                                        "provider": "openai"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "provider_not_configured" and "provider" in body["errors"]
    assert f"PUT /v1/multimodal/tenants/{tenant_a.slug}/providers/openai" in body["detail"]
    assert "OPENAI_API_KEY" in body["detail"]
    assert not MultimodalRequest.all_tenants.exists()


def test_openai_compatible_without_a_base_url_is_refused_at_create(client_a, tenant_a):
    store_key(tenant_a, provider="openai-compatible",
                                 api_key=KEY)
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "hi",
                                        "provider": "openai-compatible"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "provider_not_configured"
    assert "base_url" in response.json()["detail"]


def test_openai_compatible_runs_against_the_operator_base_url(client_a, configure, cloud, run):
    configure("openai-compatible", path="/gateway/v1", default_model="local-tts")
    received = provider_fakes.openai_speech(cloud, audio=wav(), prefix="/gateway/v1")
    mm_request, result = run(client_a, modality="text_to_speech", input_text="hi",
                             provider="openai-compatible")
    assert mm_request["state"] == "completed", mm_request
    assert received.last["json"] == {"model": "local-tts", "input": "hi", "voice": "alloy",
                                     "response_format": "wav"}
    assert result["metadata"]["model"] == "local-tts"


def test_a_key_deleted_before_execution_fails_the_request_without_fallback(
    client_a, configure, cloud, tenant_a, django_capture_on_commit_callbacks
):
    configure("openai")
    created = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "hi",
                                       "execute_now": False}, format="json").json()
    assert created["provider"] == "openai"
    assert client_a.delete(keys_url(tenant_a, "openai")).status_code == 204
    with django_capture_on_commit_callbacks(execute=True):
        client_a.post(f"{REQUESTS}/{created['id']}/execute")
    mm_request = client_a.get(f"{REQUESTS}/{created['id']}").json()
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"] == "openai: no API key is configured"
    assert len(cloud.log) == 0


def test_an_undecryptable_tenant_key_fails_and_never_uses_the_platform_key(
    client_a, configure, cloud, run, settings
):
    configure("openai")
    settings.OPENAI_API_KEY = PLATFORM_KEY
    settings.AGENT33_SECRET_KEYS = [Fernet.generate_key().decode()]  # the old key is gone
    mm_request, _ = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"].startswith("openai: the tenant's stored key cannot be "
                                                  "decrypted with AGENT33_SECRET_KEYS")
    assert len(cloud.log) == 0


# --- resolution order --------------------------------------------------------------------


def resolved(client, modality: str = "text_to_speech", **extra) -> str:
    body = {"modality": modality, "execute_now": False, **extra}
    if modality == "text_to_speech":
        body["input_text"] = "hi"
    elif modality == "speech_to_text":
        body["input_artifact_base64"] = b64(wav(0.1, 16000))
    else:
        body["input_artifact_base64"] = b64(png())
    response = client.post(REQUESTS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["provider"]


def test_resolution_order_requested_then_tenant_then_platform_then_offline(
    client_a, tenant_a, settings
):
    # Nothing configured: the offline engines.
    assert resolved(client_a, "text_to_speech") == "espeak"
    assert resolved(client_a, "speech_to_text") == "whisper-local"
    assert resolved(client_a, "vision_analysis") == "tesseract"

    # Platform keys in the environment: the platform's default.
    settings.OPENAI_API_KEY = PLATFORM_KEY
    assert resolved(client_a, "text_to_speech") == "openai"
    assert resolved(client_a, "vision_analysis") == "openai"

    # The tenant's own key wins over the platform's, for the modalities it serves.
    store_key(tenant_a, provider="elevenlabs",
                                 api_key=KEY)
    assert resolved(client_a, "text_to_speech") == "elevenlabs"
    assert resolved(client_a, "speech_to_text") == "openai"  # ElevenLabs does TTS only

    # A named provider wins over everything.
    assert resolved(client_a, "text_to_speech", provider="espeak") == "espeak"
    assert resolved(client_a, "text_to_speech", provider="openai") == "openai"

    # An explicit platform setting beats the key-derived platform default (may be offline).
    settings.MULTIMODAL_DEFAULT_PROVIDERS = {"speech_to_text": "whisper-local"}
    assert resolved(client_a, "speech_to_text") == "whisper-local"


def test_tenant_default_prefers_the_specialist_then_openai(client_a, tenant_a, settings):
    for provider in ("openai-compatible", "openai", "elevenlabs"):
        store_key(tenant_a, provider=provider,
                                     api_key=KEY, base_url="http://gw.example/v1")
    assert resolved(client_a, "text_to_speech") == "elevenlabs"
    assert resolved(client_a, "vision_analysis") == "openai"
    ProviderCredential.all_tenants.filter(provider="openai").delete()
    assert resolved(client_a, "vision_analysis") == "openai-compatible"


def test_another_tenants_keys_do_not_change_resolution(client_a, tenant_b):
    store_key(tenant_b, provider="openai", api_key=KEY)
    assert resolved(client_a, "text_to_speech") == "espeak"


def test_resolution_costs_one_query(client_a, tenant_a, django_assert_num_queries):
    from multimodal.resolution import resolve_provider

    with tenant_scope(tenant_a):
        with django_assert_num_queries(1):
            assert resolve_provider(tenant_a, "text_to_speech") == "espeak"
        with django_assert_num_queries(0):
            assert resolve_provider(tenant_a, "text_to_speech", "espeak") == "espeak"


# --- deadline ----------------------------------------------------------------------------


def test_the_call_deadline_is_the_time_left_capped_by_the_current_policy(tenant_a):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, requested_timeout_seconds=120)
    with tenant_scope(tenant_a):  # the execution task's scope
        call = provider_call_for(mm_request, 120)
        assert 119 < call.remaining() <= 120
        # The policy was lowered after the request was accepted: it still binds the execution.
        MultimodalPolicy.all_tenants.create(tenant=tenant_a, max_timeout_seconds=5)
        assert 4 < provider_call_for(mm_request, 120).remaining() <= 5
        assert provider_call_for(mm_request, 2).remaining() <= 2


def test_a_provider_that_never_answers_fails_at_the_deadline(client_a, configure, cloud, run):
    configure("openai")

    def hang(req: Request) -> Response:
        time.sleep(3)
        return Response(b"late", content_type="audio/wav")

    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_handler(hang)
    mm_request, _ = run(client_a, modality="text_to_speech", input_text="hi",
                        requested_timeout_seconds=1)
    assert mm_request["state"] == "failed"
    # The provider call itself gave up at the deadline (a late answer would have been
    # discarded with the request's own "timed out after 1 s").
    assert mm_request["error_message"].startswith("openai: timed out after")


def test_the_platform_openai_compatible_server_comes_from_the_environment(monkeypatch):
    """OPENAI_COMPATIBLE_API_KEY / _BASE_URL are read like the other providers' settings."""
    import importlib

    from agent33 import settings as settings_module

    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-platform-compatible")
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", "https://llm.example.com/v1")
    reloaded = importlib.reload(settings_module)
    try:
        assert reloaded.OPENAI_COMPATIBLE_API_KEY == "sk-platform-compatible"
        assert reloaded.OPENAI_COMPATIBLE_BASE_URL == "https://llm.example.com/v1"
    finally:
        monkeypatch.undo()
        importlib.reload(settings_module)
