"""Per modality x provider statistics (aggregated in the database), and the idempotent demo
data."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.sql import compiler
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agent33.tenancy.context import tenant_scope
from multimodal import demo
from multimodal.models import MultimodalRequest, MultimodalResult
from multimodal.selectors import request_stats
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


def test_stats_show_spend_per_modality_and_provider(client_a, tenant_a):
    MultimodalResultFactory(tenant=tenant_a, cost_nano_usd=1_500_000)
    MultimodalResultFactory(tenant=tenant_a, cost_nano_usd=250)
    MultimodalResultFactory(tenant=tenant_a, cost_nano_usd=None)  # no price: not counted
    [row] = client_a.get(URL).json()
    assert row["spend_usd"] == "0.00150025"
    assert row["unpriced"] == 1


def percentile_cont(values: list[int], fraction: float) -> int:
    """The reference: linear interpolation between the closest ranks, rounded half up."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * fraction
    low, high = math.floor(rank), math.ceil(rank)
    exact = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return math.floor(exact + 0.5)


def bulk_results(tenant, latencies: list[int], *, modality: str, provider: str) -> None:
    now = timezone.now()
    requests = MultimodalRequest.all_tenants.bulk_create([
        MultimodalRequest(tenant=tenant, modality=modality, provider=provider,
                          state="completed", created_at=now, finished_at=now)
        for _ in latencies
    ])
    MultimodalResult.all_tenants.bulk_create([
        MultimodalResult(tenant=tenant, request=r, state="completed", provider=provider,
                         latency_ms=latency, cost_nano_usd=latency)
        for r, latency in zip(requests, latencies, strict=True)
    ])


class RowsFetched:
    """Counts the rows every multi-row query hands to Python."""

    def __init__(self, monkeypatch):
        self.rows = 0
        original = compiler.cursor_iter

        def counting(*args, **kwargs):
            for chunk in original(*args, **kwargs):
                self.rows += len(chunk)
                yield chunk

        monkeypatch.setattr(compiler, "cursor_iter", counting)


def stats_of(tenant, monkeypatch) -> tuple[list[dict], list[str], int]:
    fetched = RowsFetched(monkeypatch)
    with tenant_scope(tenant), CaptureQueriesContext(connection) as queries:
        stats = request_stats(since=timezone.now() - timedelta(hours=1))
    monkeypatch.undo()
    return stats, [q["sql"] for q in queries.captured_queries], fetched.rows


def test_stats_aggregate_a_big_window_in_the_database(tenant_a, tenant_b, monkeypatch):
    rng = random.Random(16)
    small = {"tts": [rng.randint(5, 900) for _ in range(3)],
             "ocr": [rng.randint(5, 900) for _ in range(2)]}
    bulk_results(tenant_a, small["tts"], modality="text_to_speech", provider="espeak")
    bulk_results(tenant_a, small["ocr"], modality="vision_analysis", provider="tesseract")
    _, small_queries, _ = stats_of(tenant_a, monkeypatch)

    big = {"tts": [rng.randint(5, 900) for _ in range(600)],
           "ocr": [rng.randint(5, 900) for _ in range(401)]}
    bulk_results(tenant_b, big["tts"], modality="text_to_speech", provider="espeak")
    bulk_results(tenant_b, big["ocr"], modality="vision_analysis", provider="tesseract")
    stats, queries, rows = stats_of(tenant_b, monkeypatch)

    by_modality = {row["modality"]: row for row in stats}
    for key, modality in (("tts", "text_to_speech"), ("ocr", "vision_analysis")):
        row = by_modality[modality]
        assert row["completed"] == len(big[key])
        assert row["p50_latency_ms"] == percentile_cont(big[key], 0.5)
        assert row["p95_latency_ms"] == percentile_cont(big[key], 0.95)
        assert row["spend_usd"] * 10**9 == sum(big[key])
    # The same queries however big the window, and only a few rows ever reach Python.
    assert len(queries) == len(small_queries)
    assert 0 < rows <= 20, f"{rows} rows fetched for a window of 1,001 results"
    if connection.vendor == "postgresql":
        assert any("percentile_cont" in sql for sql in queries)
    else:
        assert any("ROW_NUMBER() OVER" in sql for sql in queries)


def test_one_result_is_its_own_percentile(client_a, tenant_a):
    MultimodalResultFactory(tenant=tenant_a, latency_ms=77)
    [row] = client_a.get(URL).json()
    assert (row["p50_latency_ms"], row["p95_latency_ms"]) == (77, 77)


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
