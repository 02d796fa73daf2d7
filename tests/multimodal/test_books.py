"""The books balance (DESIGN §8.2): every attempt the provider may have billed counts in
spend, compute spent before a failure is charged, offline estimates come from measured
throughput, and no request costs more than it reserved under a daily spend limit."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from werkzeug import Response

from agent33.tenancy.context import tenant_scope
from multimodal.models import DailySpend, EngineThroughput, MultimodalRequest
from multimodal.providers.base import (
    MODALITY_TEXT_TO_SPEECH,
    InputFacts,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from multimodal.providers.registry import register_provider, unregister_provider
from multimodal.services import spend
from tests.factories.multimodal import wav_bytes

pytestmark = pytest.mark.django_db

TEXT = "The books balance." * 5 + "ab"  # 92 characters
TTS_1 = Decimal("0.000015")  # the seeded tts-1 price per character


def speech_answers(cloud, statuses: list[int]):
    """The loopback OpenAI speech endpoint answering `statuses` in turn (then 200s)."""
    calls = []

    def answer(request):
        calls.append(request)
        status = statuses[len(calls) - 1] if len(calls) <= len(statuses) else 200
        if status == 200:
            return Response(wav_bytes(), content_type="audio/wav")
        return Response('{"error": {"message": "busy"}}', status=status,
                        content_type="application/json")

    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_handler(answer)
    return calls


@pytest.fixture
def fast_retries(monkeypatch):
    from multimodal.providers import http

    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "BACKOFF_MAX_SECONDS", 0.02)


def settled(tenant) -> tuple[int, int]:
    row = DailySpend.all_tenants.get(tenant=tenant)
    return row.settled_nano_usd, row.reserved_nano_usd


def nanos(usd: Decimal) -> int:
    return int(usd * 1_000_000_000)


def test_an_answer_after_a_5xx_is_charged_for_both_attempts_and_a_429_for_none(
    client_a, tenant_a, configure, cloud, run, prices, fast_retries
):
    configure("openai")
    calls = speech_answers(cloud, [500, 429])
    _, result = run(client_a, modality="text_to_speech", provider="openai", input_text=TEXT)
    assert len(calls) == 3
    metadata = result["metadata"]
    each = TTS_1 * len(TEXT)
    assert metadata["unanswered_attempts"] == 1  # the 500; the 429 was refused unworked
    assert [c["for"] for c in metadata["charges"]] == [
        "the answer", "1 unanswered attempt(s) the provider may have billed, at the estimate"]
    assert Decimal(metadata["cost_usd"]) == 2 * each
    assert metadata["estimate"] == {"usage": {"characters": len(TEXT)},
                                    "cost_usd": f"{each.normalize():f}"}
    assert settled(tenant_a) == (nanos(2 * each), 0)


def test_a_request_that_fails_after_paid_attempts_is_charged_for_them(
    client_a, tenant_a, configure, cloud, run, prices, fast_retries
):
    configure("openai")
    speech_answers(cloud, [503] * 5)
    mm_request, result = run(client_a, modality="text_to_speech", provider="openai",
                             input_text=TEXT)
    assert mm_request["state"] == "failed"
    assert "giving up" in mm_request["error_message"]
    assert result["metadata"]["unanswered_attempts"] == 5
    assert Decimal(result["metadata"]["cost_usd"]) == 5 * TTS_1 * len(TEXT)
    assert settled(tenant_a) == (nanos(5 * TTS_1 * len(TEXT)), 0)


def test_under_a_limit_a_paid_retry_needs_room_and_the_limit_is_never_passed(
    client_a, operator_client, tenant_a, configure, cloud, run, prices, fast_retries
):
    """A limit with room for one attempt: the first answers 500, its retry would need a
    second reservation the limit refuses, so it is not made; spend stays within the
    limit."""
    configure("openai")
    calls = speech_answers(cloud, [500])
    limit = (TTS_1 * len(TEXT) * Decimal("1.5")).quantize(Decimal("0.000001"))
    assert operator_client.post(f"/v1/multimodal/tenants/{tenant_a.slug}/policy",
                                {"daily_spend_limit_usd": str(limit)},
                                format="json").status_code == 200
    mm_request, result = run(client_a, modality="text_to_speech", provider="openai",
                             input_text=TEXT)
    assert len(calls) == 1 and result["metadata"]["unanswered_attempts"] == 1
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"].endswith(
        "not retried: the tenant's daily spend limit has no room for another paid attempt")
    spent, reserved = settled(tenant_a)
    assert spent == nanos(TTS_1 * len(TEXT)) <= nanos(limit) and reserved == 0


class SlowOfflineEngine(Provider):
    """An offline engine (compute priced per second) that works `seconds` per character,
    honouring its call's deadline as the real engines do."""

    name = "test-offline"
    modalities = frozenset({MODALITY_TEXT_TO_SPEECH})
    default_models = {MODALITY_TEXT_TO_SPEECH: "slow-1"}
    size_unit = "characters"
    seconds_per_char = 0.001

    def estimate_usage(self, modality, facts: InputFacts, options, model, *,
                       seconds_per_unit=None):
        rate = 0.0001 if seconds_per_unit is None else seconds_per_unit
        return {"characters": facts.text_chars, "compute_seconds": facts.text_chars * rate}

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        started = time.monotonic()
        work = len(text) * self.seconds_per_char
        if work > call.remaining():
            time.sleep(max(call.remaining(), 0))
            raise ProviderError(self.name, "deadline exceeded while synthesising")
        time.sleep(work)
        return ProviderOutput(model="slow-1", output_text="done", usage={
            "characters": len(text), "compute_seconds": time.monotonic() - started})


@pytest.fixture
def offline(db):
    from multimodal.models import ProviderPrice

    engine = register_provider(SlowOfflineEngine())
    ProviderPrice.objects.create(provider="test-offline", model="slow-1",
                                 usd_per_unit={"compute_seconds": "0.001"})
    yield engine
    unregister_provider(engine.name)


def test_an_offline_engine_is_stopped_at_the_compute_its_reservation_pays_for(
    client_a, operator_client, tenant_a, run, offline
):
    """The estimate (0.1 ms a character) is far below the engine's real speed (1 ms): with
    a limit, the engine gets 3x its estimate and is stopped there, charged what it used,
    and the day's spend never passes what was reserved."""
    assert operator_client.post(f"/v1/multimodal/tenants/{tenant_a.slug}/policy",
                                {"daily_spend_limit_usd": "1.00"},
                                format="json").status_code == 200
    text = "x" * 400  # estimate 0.04 s, reserved 0.12 s; needs 0.4 s
    mm_request, result = run(client_a, modality="text_to_speech", provider="test-offline",
                             input_text=text)
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"] == (
        "test-offline: stopped after 0.12 s of compute, the 3x of its estimate reserved "
        "against the tenant's daily spend limit")
    charged = Decimal(result["metadata"]["cost_usd"])
    assert Decimal("0.0001") <= charged <= Decimal("0.00012")  # at most 0.12 s at $0.001/s
    assert result["metadata"]["charges"][0]["for"] == "compute before the failure"
    spent, reserved = settled(tenant_a)
    assert spent == nanos(charged) and reserved == 0


def test_offline_estimates_come_from_measured_throughput(client_a, tenant_a, run, offline):
    for _ in range(3):
        mm_request, _ = run(client_a, modality="text_to_speech", provider="test-offline",
                            input_text="y" * 50)
        assert mm_request["state"] == "completed"
    measured = EngineThroughput.objects.get(provider="test-offline")
    assert measured.samples == 3 and measured.unit == "characters"
    assert 0.0009 <= measured.seconds_per_unit <= 0.01  # 1 ms a character, and overheads
    with tenant_scope(tenant_a):
        estimate = spend.cost_estimate(provider="test-offline", modality="text_to_speech",
                                       model="", options={}, facts=InputFacts(text_chars=1000))
    assert estimate.usage["compute_seconds"] == pytest.approx(
        1000 * measured.seconds_per_unit)
    _, result = run(client_a, modality="text_to_speech", provider="test-offline",
                    input_text="z" * 50)
    # The estimate is shown beside the actual cost.
    assert set(result["metadata"]["estimate"]) == {"usage", "cost_usd"}


def test_a_failed_offline_request_is_charged_its_compute(client_a, tenant_a, run, offline):
    mm_request, result = run(client_a, modality="text_to_speech", provider="test-offline",
                             input_text="x" * 2000, requested_timeout_seconds=1)
    assert mm_request["state"] == "failed"
    charged = Decimal(result["metadata"]["cost_usd"])
    assert Decimal("0.0009") <= charged <= Decimal("0.002")  # about 1 s at $0.001/s
    assert settled(tenant_a)[0] == nanos(charged)
    assert MultimodalRequest.all_tenants.get(pk=mm_request["id"]).state == "failed"
