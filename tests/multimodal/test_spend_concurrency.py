"""Twelve requests at once against a daily spend limit that allows five (DESIGN §7.4): a real
gunicorn (2 processes x 6 threads) and a `manage.py worker` on the database of this test pass
(a scratch PostgreSQL database in the PostgreSQL pass, an SQLite file otherwise), migrated
as in production (so the seeded tts-1 price is used), and a loopback OpenAI that counts the
calls it receives. Exactly five reach the provider and complete; seven get 429."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx
import pytest
from cryptography.fernet import Fernet

from bench.common import bench_env, gunicorn, job_worker, manage
from multimodal import provider_fakes
from tests.factories.multimodal import wav_bytes
from tests.workers import wait_for

pytestmark = pytest.mark.slow

CONCURRENT = 12
ALLOWED = 5
TEXT = ("Twelve at once. " * 7)[:99] + "."  # 100 characters: $0.0015 at tts-1's price
COST = Decimal("0.0015")


def test_twelve_concurrent_requests_against_a_limit_for_five(scratch_database_url, cloud,
                                                             tmp_path):
    env = bench_env(scratch_database_url, AGENT33_SECRET_KEYS=Fernet.generate_key().decode(),
                    MEDIA_ROOT=str(tmp_path / "media"),
                    AGENT33_PROVIDER_PRIVATE_NETWORKS="127.0.0.0/8")
    env.pop("CELERY_BROKER_URL", None)  # embedded: the worker runs them, each create waits
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    manage(env, "migrate", "-v0")
    manage(env, "create_tenant", "spender")
    tenant_token = manage(env, "issue_token", "--tenant", "spender", "--scopes",
                          "multimodal:read,multimodal:write,multimodal:admin").split()[-1]
    operator_token = manage(env, "issue_token", "--all-tenants", "--scopes",
                            "admin").split()[-1]
    received = provider_fakes.openai_speech(cloud, audio=wav_bytes())

    with gunicorn(env, workers=2, threads=6) as url, job_worker(env, concurrency=4):
        tenant = httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {tenant_token}"})
        operator = httpx.Client(base_url=url, timeout=60,
                                headers={"Authorization": f"Bearer {operator_token}"})
        keys = "/v1/multimodal/tenants/spender/providers/openai"
        assert tenant.put(keys, json={"api_key": "sk-concurrency-1234"}).status_code == 200
        assert operator.put(keys, json={"base_url": cloud.url_for("/v1")}).status_code == 200
        tts_1 = tenant.get("/v1/multimodal/prices", params={"provider": "openai",
                                                            "model": "tts-1"}).json()
        assert tts_1[0]["usd_per_unit"] == {"characters": "0.000015"}  # the seeded price
        limited = tenant.post("/v1/multimodal/tenants/spender/policy",
                              json={"daily_spend_limit_usd": str(COST * ALLOWED)})
        assert limited.status_code == 200, limited.text

        barrier = threading.Barrier(CONCURRENT)
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def send() -> None:
            with httpx.Client(base_url=url, timeout=120,
                              headers={"Authorization": f"Bearer {tenant_token}"}) as client:
                barrier.wait()
                response = client.post("/v1/multimodal/requests", json={
                    "modality": "text_to_speech", "provider": "openai", "input_text": TEXT})
            with lock:
                answers.append(response)

        threads = [threading.Thread(target=send) for _ in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        by_status: dict[int, list[httpx.Response]] = {}
        for answer in answers:
            by_status.setdefault(answer.status_code, []).append(answer)
        assert sorted(by_status) == [201, 429], [(a.status_code, a.text[:200]) for a in answers]
        created, refused = by_status[201], by_status[429]
        assert len(created) == ALLOWED and len(refused) == CONCURRENT - ALLOWED
        # Each answered once done or, past the waiting slots, as processing: all complete.
        for answer in created:
            wait_for(lambda answer=answer: tenant.get(
                f"/v1/multimodal/requests/{answer.json()['id']}").json()["state"] != "processing",
                timeout=120, message="the worker to end the request")
        assert {tenant.get(f"/v1/multimodal/requests/{a.json()['id']}").json()["state"]
                for a in created} == {"completed"}
        assert {a.json()["code"] for a in refused} == {"spend_limit_reached"}
        assert all(1 <= int(a.headers["Retry-After"]) <= 86400 for a in refused)
        assert len(received.requests) == ALLOWED  # the provider saw exactly five calls

        # Nothing was stored for the refused ones, and the day's spend is exactly the limit.
        listed = tenant.get("/v1/multimodal/requests", params={"limit": 100}).json()
        assert sorted(r["id"] for r in listed) == sorted(a.json()["id"] for a in created)
        spend = tenant.get("/v1/multimodal/tenants/spender/spend").json()
        assert (spend["spent_usd"], spend["reserved_usd"], spend["remaining_usd"]) == (
            "0.0075", "0.00", "0.00")
