"""Per modality x provider statistics, and the idempotent demo data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agent33.tenancy.context import tenant_scope
from multimodal import demo
from multimodal.models import MultimodalRequest
from tests.factories.multimodal import MultimodalRequestFactory, MultimodalResultFactory

URL = "/v1/multimodal/stats"
pytestmark = pytest.mark.django_db


def test_stats_per_modality_and_provider(client_a, tenant_a, tenant_b):
    for latency in (10, 20, 30, 40):
        MultimodalResultFactory(tenant=tenant_a, latency_ms=latency)
    MultimodalRequestFactory(tenant=tenant_a, state="failed", error_message="espeak: nope")
    MultimodalRequestFactory(tenant=tenant_a, state="cancelled")
    MultimodalRequestFactory(tenant=tenant_a, modality="vision_analysis", provider="tesseract")
    MultimodalResultFactory(tenant=tenant_b, latency_ms=999)  # another tenant: not counted
    old = MultimodalRequestFactory(tenant=tenant_a, state="failed")
    MultimodalRequest.all_tenants.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )

    response = client_a.get(URL)
    assert response.status_code == 200
    by_key = {(row["modality"], row["provider"]): row for row in response.json()}
    assert set(by_key) == {("text_to_speech", "espeak"), ("vision_analysis", "tesseract")}
    tts = by_key[("text_to_speech", "espeak")]
    assert (tts["total"], tts["completed"], tts["failed"], tts["cancelled"]) == (6, 4, 1, 1)
    assert tts["success_rate"] == 0.8
    # Interpolated as percentile_cont: 20 + 0.5 x 10, and 30 + 0.85 x 10 = 38.5 → 39.
    assert (tts["p50_latency_ms"], tts["p95_latency_ms"]) == (25, 39)
    assert [e["error_message"] for e in tts["last_errors"]] == ["espeak: nope"]
    vision = by_key[("vision_analysis", "tesseract")]
    assert vision["pending"] == 1 and vision["success_rate"] is None

    since = (timezone.now() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wider = {(r["modality"], r["provider"]): r for r in client_a.get(f"{URL}?since={since}").json()}
    assert wider[("text_to_speech", "espeak")]["failed"] == 2


@pytest.mark.parametrize("since", ["yesterday", "2024-13-45T00:00:00Z"])
def test_stats_since_must_be_a_date_time(client_a, since):
    response = client_a.get(f"{URL}?since={since}")
    assert response.status_code == 400
    assert "since" in response.json()["errors"]


def test_operator_stats_cover_every_tenant(operator_client, tenant_a, tenant_b):
    MultimodalResultFactory(tenant=tenant_a)
    MultimodalResultFactory(tenant=tenant_b)
    [row] = operator_client.get(URL).json()
    assert row["total"] == 2


@pytest.mark.django_db(transaction=True)  # seed_demo runs outside any transaction
def test_demo_data_is_real_and_idempotent(tenant_a):
    with tenant_scope(tenant_a):
        demo.seed_demo(tenant=tenant_a)
    with tenant_scope(tenant_a):
        demo.seed_demo(tenant=tenant_a)
    states = dict(MultimodalRequest.all_tenants.filter(tenant=tenant_a)
                  .values_list("modality", "state"))
    assert states == {"text_to_speech": "completed", "vision_analysis": "completed",
                      "speech_to_text": "pending"}
