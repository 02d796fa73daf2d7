"""Daily spend limits (DESIGN §7.4): set in the policy, estimated and reserved before any
provider call, refused with 429 and nothing stored, settled to the actual cost, released on
failure, cancel and reaping; and the cost outcome events and metrics of completed requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agent33.auth.scopes import MULTIMODAL_ADMIN, MULTIMODAL_READ, MULTIMODAL_WRITE
from agent33.tenancy.context import tenant_scope
from multimodal import provider_fakes, services
from multimodal.models import Artifact, DailySpend, MultimodalRequest, MultimodalResult
from multimodal.pricing import seconds_to_next_utc_midnight, to_nanos
from multimodal.providers.base import InputFacts
from multimodal.providers.registry import get_provider
from outcomes.models import OutcomeEvent
from tests.factories.multimodal import MultimodalRequestFactory, png_bytes, wav_bytes
from tests.multimodal.conftest import REQUESTS, b64
from tests.observability.helpers import samples, value
from tests.origins import operator

pytestmark = pytest.mark.django_db

HUNDRED_CHARS = ("Spend limits hold. " * 6)[:99] + "."
ONE_TTS = Decimal("0.0015")  # 100 characters of tts-1 at $15 per million


def policy_url(tenant) -> str:
    return f"/v1/multimodal/tenants/{tenant.slug}/policy"


def spend_url(tenant) -> str:
    return f"/v1/multimodal/tenants/{tenant.slug}/spend"


@pytest.fixture
def limit(client_a, tenant_a):
    def set_limit(amount: str | None) -> None:
        response = client_a.post(policy_url(tenant_a), {"daily_spend_limit_usd": amount},
                                 format="json")
        assert response.status_code == 200, response.content

    return set_limit


def spend_row(tenant) -> DailySpend:
    return DailySpend.all_tenants.get(tenant=tenant, day=timezone.now().astimezone(UTC).date())


def tts(client, **extra):
    return client.post(REQUESTS, {"modality": "text_to_speech", "provider": "openai",
                                  "input_text": HUNDRED_CHARS, **extra}, format="json")


# --- the limit in the policy -------------------------------------------------------------


def test_the_limit_is_a_decimal_string_set_by_a_tenant_admin(api_client_for, tenant_a):
    admin = api_client_for(tenant_a, scopes=[MULTIMODAL_ADMIN, MULTIMODAL_READ])
    response = admin.post(policy_url(tenant_a), {"daily_spend_limit_usd": "25.5"},
                          format="json")
    assert response.status_code == 200, response.content
    assert response.json()["daily_spend_limit_usd"] == "25.50"
    assert admin.get(policy_url(tenant_a)).json()["daily_spend_limit_usd"] == "25.50"
    cleared = admin.post(policy_url(tenant_a), {"daily_spend_limit_usd": None}, format="json")
    assert cleared.json()["daily_spend_limit_usd"] is None

    writer = api_client_for(tenant_a, scopes=[MULTIMODAL_WRITE])
    refused = writer.post(policy_url(tenant_a), {"daily_spend_limit_usd": "1000"},
                          format="json")
    assert refused.status_code == 403


@pytest.mark.parametrize("amount", ["-1", 0.5, "1.0000001", "2000000", "ten", True])
def test_a_bad_limit_is_a_400(client_a, tenant_a, amount):
    response = client_a.post(policy_url(tenant_a), {"daily_spend_limit_usd": amount},
                             format="json")
    assert response.status_code == 400
    assert "daily_spend_limit_usd" in response.json()["errors"]


# --- refused before the provider, nothing stored --------------------------------------------


def test_a_request_over_the_limit_is_429_with_retry_after_and_no_provider_call(
    client_a, tenant_a, configure, cloud, prices, limit, run
):
    configure("openai")
    received = provider_fakes.openai_speech(cloud, audio=wav_bytes())
    limit(str(ONE_TTS * 2))
    for _ in range(2):
        mm_request, _ = run(client_a, modality="text_to_speech", provider="openai",
                            input_text=HUNDRED_CHARS)
        assert mm_request["state"] == "completed"

    refused = tts(client_a)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "spend_limit_reached"
    assert "$0.003" in body["detail"] and "$0.0015" in body["detail"]
    expected = seconds_to_next_utc_midnight(timezone.now())
    assert expected - 5 <= int(refused["Retry-After"]) <= expected
    assert len(received.requests) == 2
    assert MultimodalRequest.all_tenants.count() == 2
    row = spend_row(tenant_a)
    assert (row.settled_nano_usd, row.reserved_nano_usd) == (to_nanos(ONE_TTS * 2), 0)


def test_a_refused_request_stores_no_inline_input(client_a, tenant_a, configure, cloud,
                                                   prices, limit):
    configure("openai")
    received = provider_fakes.openai_transcription(cloud, text="never")
    limit("0.00005")  # whisper-1 bills 0.2 s of audio as a whole second: $0.0001
    response = client_a.post(REQUESTS, {"modality": "speech_to_text", "provider": "openai",
                                        "input_artifact_base64": b64(wav_bytes(0.2))},
                             format="json")
    assert response.status_code == 429
    assert not Artifact.all_tenants.exists() and not MultimodalRequest.all_tenants.exists()
    assert received.requests == []


def test_with_a_limit_a_request_that_cannot_be_priced_is_refused(client_a, tenant_a, limit):
    limit("10")  # and no price table: espeak's cost cannot be estimated
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "hi"},
                             format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "cost_not_estimable"
    assert "PUT /v1/multimodal/prices/espeak/espeak-ng" in response.json()["detail"]
    assert not MultimodalRequest.all_tenants.exists()


def test_executing_a_pending_request_over_the_limit_is_429_and_leaves_it_pending(
    client_a, tenant_a, configure, prices, limit
):
    configure("openai")
    created = tts(client_a, execute_now=False)
    assert created.status_code == 201  # nothing is reserved for a request that waits
    limit("0.001")
    refused = client_a.post(f"{REQUESTS}/{created.json()['id']}/execute")
    assert refused.status_code == 429 and refused.json()["code"] == "spend_limit_reached"
    assert client_a.get(f"{REQUESTS}/{created.json()['id']}").json()["state"] == "pending"
    assert not DailySpend.all_tenants.filter(reserved_nano_usd__gt=0).exists()


def test_a_finished_request_is_a_409_before_any_estimate(client_a, tenant_a, limit):
    done = MultimodalRequestFactory(tenant=tenant_a, state="completed")
    limit("10")  # no prices either: the state is what refuses it
    response = client_a.post(f"{REQUESTS}/{done.pk}/execute")
    assert response.status_code == 409


# --- reserve, settle, release --------------------------------------------------------------


def test_a_completed_request_settles_its_actual_cost(client_a, tenant_a, configure, cloud,
                                                     prices, limit, run):
    configure("openai")
    provider_fakes.openai_chat_vision(cloud, reply="A square.",
                                      usage={"prompt_tokens": 3000, "completion_tokens": 10})
    limit("1")
    mm_request, result = run(client_a, modality="vision_analysis",
                             input_artifact_base64=b64(png_bytes((64, 64))),
                             options={"max_tokens": 100})
    assert mm_request["state"] == "completed"
    stored = MultimodalRequest.all_tenants.get(pk=mm_request["id"])
    # The estimate: gpt-4o-mini's 2833 + 5667 tokens for one tile, the default prompt's 5,
    # and max_tokens of output: 8505 x $0.15 + 100 x $0.60 per million.
    assert stored.estimated_usage == {"input_tokens": 8505, "output_tokens": 100}
    assert stored.reserved_nano_usd == to_nanos(Decimal("0.00133575"))
    actual = Decimal("3000") * Decimal("0.00000015") + Decimal("10") * Decimal("0.0000006")
    assert result["metadata"]["cost_usd"] == "0.000456" == f"{actual.normalize():f}"
    row = spend_row(tenant_a)
    assert (row.settled_nano_usd, row.reserved_nano_usd) == (to_nanos(actual), 0)

    spend = client_a.get(spend_url(tenant_a)).json()
    assert spend["spent_usd"] == "0.000456" and spend["reserved_usd"] == "0.00"
    assert spend["daily_spend_limit_usd"] == "1.00"
    assert spend["remaining_usd"] == "0.999544"
    assert spend["resets_at"].endswith("T00:00:00Z")


def test_a_failed_request_releases_its_reservation(client_a, tenant_a, configure, cloud,
                                                   prices, limit, run):
    configure("openai")
    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_json(
        {"error": {"message": "bad voice"}}, status=400)
    limit("1")
    mm_request, result = run(client_a, modality="text_to_speech", input_text="hi")
    assert mm_request["state"] == "failed"
    assert result["metadata"]["cost_usd"] is None
    row = spend_row(tenant_a)
    assert (row.settled_nano_usd, row.reserved_nano_usd) == (0, 0)


def claim(tenant, **fields) -> MultimodalRequest:
    """An espeak request claimed through the service (its task never runs in the test)."""
    mm_request = MultimodalRequestFactory(tenant=tenant, **fields)
    with tenant_scope(tenant):
        services.request_execute(mm_request=mm_request, origin=operator())
    mm_request.refresh_from_db()
    return mm_request


def test_cancel_releases_the_reservation(tenant_a, prices, limit):
    limit("1")
    mm_request = claim(tenant_a, input_text="x" * 40)
    assert mm_request.reserved_nano_usd > 0
    assert spend_row(tenant_a).reserved_nano_usd == mm_request.reserved_nano_usd
    with tenant_scope(tenant_a):
        services.request_cancel(mm_request=mm_request, origin=operator())
    assert spend_row(tenant_a).reserved_nano_usd == 0


def test_a_cancel_read_before_a_new_claim_releases_the_new_claims_reservation(tenant_a,
                                                                                prices, limit):
    limit("1")
    stale = claim(tenant_a)
    with tenant_scope(tenant_a):  # fails, and is executed again with a new claim
        services.request_fail_unqueued(stale.pk, stale.claim_token, "broker down")
        services.request_execute(mm_request=MultimodalRequest.objects.get(pk=stale.pk),
                                 origin=operator())
        services.request_cancel(mm_request=stale, origin=operator())
    assert MultimodalRequest.all_tenants.get(pk=stale.pk).state == "cancelled"
    assert spend_row(tenant_a).reserved_nano_usd == 0


def test_the_reaper_releases_the_reservation(tenant_a, prices, limit):
    limit("1")
    claim(tenant_a)
    assert spend_row(tenant_a).reserved_nano_usd > 0
    reaped = services.reap_timeouts(now=timezone.now() + timedelta(hours=1))
    assert len(reaped) == 1
    assert spend_row(tenant_a).reserved_nano_usd == 0


def test_spend_counts_on_the_day_of_the_claim(tenant_a, prices, limit):
    limit("1")
    mm_request = claim(tenant_a)
    yesterday = mm_request.spend_day - timedelta(days=1)
    DailySpend.all_tenants.filter(tenant=tenant_a).update(day=yesterday)
    MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(spend_day=yesterday)
    mm_request.refresh_from_db()
    with tenant_scope(tenant_a):  # the claim ends after midnight
        services.request_cancel(mm_request=mm_request, origin=operator())
    assert DailySpend.all_tenants.get(tenant=tenant_a, day=yesterday).reserved_nano_usd == 0
    assert not DailySpend.all_tenants.filter(day=yesterday + timedelta(days=1)).exists()


def test_spend_is_counted_without_a_limit_and_a_limit_set_later_counts_it(
    client_a, tenant_a, configure, cloud, prices, limit, run
):
    configure("openai")
    provider_fakes.openai_speech(cloud, audio=wav_bytes())
    run(client_a, modality="text_to_speech", provider="openai", input_text=HUNDRED_CHARS)
    assert spend_row(tenant_a).settled_nano_usd == to_nanos(ONE_TTS)
    limit(str(ONE_TTS * Decimal("1.5")))  # room for half a request more
    assert tts(client_a).status_code == 429


def test_another_tenants_spend_does_not_count(client_a, client_b, tenant_a, tenant_b,
                                              configure, cloud, prices, limit, run):
    configure("openai")
    provider_fakes.openai_speech(cloud, audio=wav_bytes())
    limit(str(ONE_TTS))
    DailySpend.all_tenants.create(tenant=tenant_b, day=timezone.now().date(),
                                  settled_nano_usd=10**12)
    mm_request, _ = run(client_a, modality="text_to_speech", provider="openai",
                        input_text=HUNDRED_CHARS)
    assert mm_request["state"] == "completed"


# --- estimates ----------------------------------------------------------------------------


def test_estimates_come_from_the_input():
    openai = get_provider("openai")
    assert openai.estimate_usage("text_to_speech", InputFacts(text_chars=42), {}, "tts-1") == {
        "characters": 42}
    # whisper-1 reports whole seconds, so 2.2 s of audio is estimated as 3.
    assert openai.estimate_usage("speech_to_text", InputFacts(audio_seconds=2.2), {},
                                 "whisper-1") == {"audio_seconds": 3}
    # gpt-4o, high detail: 2048x1024 → 1536x768 → 3 x 2 tiles of 170 tokens + 85, the prompt
    # at four characters a token, and max_tokens of output.
    facts = InputFacts(text_chars=0, image_width=2048, image_height=1024)
    assert openai.estimate_usage("vision_analysis", facts,
                                 {"prompt": "x" * 40, "max_tokens": 300}, "gpt-4o") == {
        "input_tokens": 85 + 6 * 170 + 10, "output_tokens": 300}
    assert openai.estimate_usage("vision_analysis", facts, {"detail": "low"},
                                 "gpt-4o")["input_tokens"] == 85 + 5
    espeak = get_provider("espeak").estimate_usage("text_to_speech",
                                                   InputFacts(text_chars=1000), {}, "")
    assert espeak == {"characters": 1000, "compute_seconds": 0.51}


def test_the_audio_length_is_read_from_the_header_at_create(client_a, tenant_a, configure,
                                                            prices, limit):
    configure("openai")
    limit("1")
    created = client_a.post(REQUESTS, {"modality": "speech_to_text", "provider": "openai",
                                       "input_artifact_base64": b64(wav_bytes(2.5)),
                                       "execute_now": True}, format="json")
    assert created.status_code == 201, created.content
    stored = MultimodalRequest.all_tenants.get(pk=created.json()["id"])
    assert stored.estimated_usage == {"audio_seconds": 3}
    assert stored.reserved_nano_usd == to_nanos(Decimal("0.0003"))


def test_retry_after_counts_to_the_next_utc_midnight():
    assert seconds_to_next_utc_midnight(datetime(2026, 11, 27, 23, 59, 30, tzinfo=UTC)) == 30
    assert seconds_to_next_utc_midnight(datetime(2026, 11, 27, 0, 0, tzinfo=UTC)) == 86400


# --- what a completed request's cost records ------------------------------------------------


def test_a_known_cost_is_a_cost_usd_outcome_event_and_a_metric(
    client_a, tenant_a, configure, cloud, prices, run, api_client_for
):
    configure("openai")
    provider_fakes.openai_speech(cloud, audio=wav_bytes())
    scraper = api_client_for(None, scopes=["metrics:read"])
    before = samples(scraper.get("/metrics").content.decode())
    mm_request, _ = run(client_a, modality="text_to_speech", provider="openai",
                        input_text=HUNDRED_CHARS)
    event = OutcomeEvent.all_tenants.get(tenant=tenant_a, metric_type="cost_usd")
    assert (event.domain, event.event_type, event.value) == (
        "multimodal.text_to_speech", "openai", 0.0015)
    assert event.metadata == {"request_id": mm_request["id"], "state": "completed",
                              "cost_usd": "0.0015"}
    after = samples(scraper.get("/metrics").content.decode())
    name = "agent33_multimodal_spend_usd_total"
    labels = {"modality": "text_to_speech", "provider": "openai"}
    assert value(after, name, **labels) - value(before, name, **labels) == pytest.approx(0.0015)


def test_an_unknown_cost_records_no_cost_event(client_a, tenant_a, run):
    mm_request, result = run(client_a, modality="text_to_speech", input_text="No prices.")
    assert mm_request["state"] == "completed" and result["metadata"]["cost_usd"] is None
    assert not OutcomeEvent.all_tenants.filter(metric_type="cost_usd").exists()
    assert MultimodalResult.all_tenants.get().cost_nano_usd is None


def test_estimates_read_the_header_of_a_stored_artifact(client_a, tenant_a, configure, prices,
                                                        limit):
    from django.core.files.uploadedfile import SimpleUploadedFile

    configure("openai")
    limit("1")

    def upload(name: str, data: bytes) -> str:
        response = client_a.post("/v1/multimodal/artifacts",
                                 {"file": SimpleUploadedFile(name, data)}, format="multipart")
        assert response.status_code == 201, response.content
        return response.json()["id"]

    audio = upload("a.wav", wav_bytes(1.5))
    image = upload("i.png", png_bytes((1024, 512)))
    for body in ({"modality": "speech_to_text", "input_artifact_id": audio},
                 {"modality": "vision_analysis", "input_artifact_id": image,
                  "options": {"detail": "low", "max_tokens": 10}}):
        created = client_a.post(REQUESTS, {"provider": "openai", **body}, format="json")
        assert created.status_code == 201, created.content
    estimates = dict(MultimodalRequest.all_tenants.values_list("modality", "estimated_usage"))
    assert estimates == {"speech_to_text": {"audio_seconds": 2},
                         "vision_analysis": {"input_tokens": 2833 + 5, "output_tokens": 10}}
