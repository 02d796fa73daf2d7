"""Provider call latency and retries, observed where the HTTP calls happen (providers/http.py)
and served by GET /metrics."""

from __future__ import annotations

import pytest

from agent33.auth.scopes import METRICS_READ
from multimodal.providers import http as provider_http
from multimodal.providers.audio import pcm16_to_wav
from tests.observability.helpers import samples, value

pytestmark = pytest.mark.django_db

KEY = "sk-metrics-PLAINTEXT-1122334455667788"
CALLS = "agent33_provider_call_duration_seconds_count"
RETRIES = "agent33_provider_retries_total"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(provider_http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(provider_http, "BACKOFF_MAX_SECONDS", 0.05)


def test_provider_calls_and_retries_are_counted(client_a, operator_client, tenant_a, server,
                                                 api_client_for,
                                                 django_capture_on_commit_callbacks):
    server.clear()
    url = f"/v1/multimodal/tenants/{tenant_a.slug}/providers/openai"
    assert client_a.put(url, {"api_key": KEY}, format="json").status_code == 200
    assert operator_client.put(url, {"base_url": server.url_for("/v1")},
                               format="json").status_code == 200
    scraper = api_client_for(None, scopes=[METRICS_READ])
    before = samples(scraper.get("/metrics").content.decode())

    # One call that succeeds on its third attempt (503, 429, then audio) …
    server.expect_ordered_request("/v1/audio/speech").respond_with_data("busy", status=503)
    server.expect_ordered_request("/v1/audio/speech").respond_with_data("slow down", status=429)
    server.expect_ordered_request("/v1/audio/speech").respond_with_data(
        pcm16_to_wav(b"\x01\x00" * 2400, 24000), content_type="audio/wav")
    # … and one refused at once (401 is not retried).
    server.expect_ordered_request("/v1/audio/speech").respond_with_json(
        {"error": {"message": "bad key"}}, status=401)
    states = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            created = client_a.post("/v1/multimodal/requests",
                                    {"modality": "text_to_speech", "input_text": "hi",
                                     "provider": "openai"}, format="json")
        states.append(client_a.get(f"/v1/multimodal/requests/{created.json()['id']}")
                      .json()["state"])
    assert states == ["completed", "failed"]

    after = samples(scraper.get("/metrics").content.decode())

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(CALLS, provider="openai", outcome="ok") == 1
    assert delta(CALLS, provider="openai", outcome="failed") == 1
    assert delta(RETRIES, provider="openai", reason="503") == 1
    assert delta(RETRIES, provider="openai", reason="429") == 1
    assert delta("agent33_multimodal_requests", modality="text_to_speech", provider="openai",
                 state="completed") == 1
