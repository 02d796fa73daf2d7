"""One lock order under load (DESIGN §8.2), on PostgreSQL through a real gunicorn.

A tenant with a daily spend limit; twelve clients at once create-and-execute text-to-speech
requests (the worker ends them: completed by a loopback OpenAI, or failed when it answers
400), create pending ones and execute or cancel them, and cancel running ones while the
worker ends them, with the reaper sweeping. Before the lock order was fixed, a quarter of
such requests answered 500 with `deadlock detected` (creating locked the spend row then,
through the row-count trigger, a count row; ending locked them the other way round).
Afterwards: no 5xx, no deadlock in the server's or the worker's log, and the books balance:
the day's settled spend is exactly the sum of the requests' results' costs (a cancel that
lost the race to the provider's answer included), and nothing stays reserved once idle.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from django.db import connection

from bench.common import (
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    job_worker,
    manage,
)
from tests.factories.multimodal import wav_bytes
from tests.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CLIENTS = 12
OPERATIONS = 2_000
TEXT = "Locks in one order. " * 5  # 100 characters: $0.0015 at tts-1's price
SLOW = "slow " * 20  # answered after the request's 1 s deadline: the worker and the reaper race


@pytest.fixture
def database_url(require_postgres):
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    admin_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    name = f"{db['NAME']}_locks"[:63]
    yield fresh_postgres_database(name, admin_url)
    drop_postgres_database(name, admin_url)


def _provider(cloud):
    """The loopback OpenAI speech endpoint: one answer in ten is a 500 (a failed request),
    the rest a short WAV."""
    from werkzeug import Response

    audio = wav_bytes()
    counter = Counter()
    lock = threading.Lock()

    def answer(request):
        if request.get_json()["input"].startswith("slow"):
            time.sleep(1.3)
            return Response(audio, content_type="audio/wav")
        with lock:
            counter["calls"] += 1
            n = counter["calls"]
        if n % 10 == 0:
            return Response('{"error": {"message": "overloaded"}}', status=400,
                            content_type="application/json")
        return Response(audio, content_type="audio/wav")

    cloud.expect_request("/v1/audio/speech", method="POST").respond_with_handler(answer)
    return counter


def test_mixed_writes_under_a_spend_limit_never_deadlock_and_the_books_balance(
    database_url, cloud, tmp_path: Path
):
    env = bench_env(database_url, AGENT33_SECRET_KEYS=Fernet.generate_key().decode(),
                    MEDIA_ROOT=str(tmp_path / "media"),
                    AGENT33_PROVIDER_PRIVATE_NETWORKS="127.0.0.0/8", LOG_LEVEL="ERROR")
    env.pop("CELERY_BROKER_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    manage(env, "migrate", "-v0")
    manage(env, "create_tenant", "busy")
    token = manage(env, "issue_token", "--tenant", "busy", "--scopes",
                   "multimodal:read,multimodal:write,multimodal:admin,workflows:read,"
                   "workflows:execute").split()[-1]
    operator = manage(env, "issue_token", "--all-tenants", "--scopes", "admin").split()[-1]
    _provider(cloud)
    log_path = tmp_path / "gunicorn.log"

    with open(log_path, "wb") as log, gunicorn(env, workers=2, threads=6, stdout=log,
                                               stderr=log) as url, \
            job_worker(env, concurrency=2, stdout=log, stderr=log):
        headers = {"Authorization": f"Bearer {token}"}
        admin = httpx.Client(base_url=url, timeout=60,
                             headers={"Authorization": f"Bearer {operator}"})
        tenant = httpx.Client(base_url=url, timeout=60, headers=headers)
        keys = "/v1/multimodal/tenants/busy/providers/openai"
        assert tenant.put(keys, json={"api_key": "sk-locks-1234"}).status_code == 200
        assert admin.put(keys, json={"base_url": cloud.url_for("/v1")}).status_code == 200
        # Enough for about 500 requests: the rest meet 429 spend_limit_reached.
        assert admin.post("/v1/multimodal/tenants/busy/policy", json={
            "daily_spend_limit_usd": "0.75"}).status_code == 200

        statuses: Counter = Counter()
        failures: list[str] = []
        pending: list[str] = []  # created, not executed
        running: list[str] = []  # executed, answered before the worker ended them
        lock = threading.Lock()
        remaining = [OPERATIONS]

        def take() -> bool:
            with lock:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
                return True

        def record(response: httpx.Response, what: str) -> None:
            with lock:
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(f"{what}: {response.status_code} {response.text[:200]}")

        def create(http: httpx.Client, *, execute_now: bool) -> httpx.Response:
            response = http.post("/v1/multimodal/requests", json={
                "modality": "text_to_speech", "provider": "openai", "input_text": TEXT,
                "execute_now": execute_now})
            record(response, "create+execute" if execute_now else "create")
            if execute_now and response.status_code == 201 \
                    and response.json()["state"] == "processing":
                with lock:
                    running.append(response.json()["id"])
            return response

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, timeout=120, headers=headers) as http:
                while take():
                    roll = rng.random()
                    if roll < 0.05:  # past its deadline: the worker and the reaper race
                        record(http.post("/v1/multimodal/requests", json={
                            "modality": "text_to_speech", "provider": "openai",
                            "input_text": SLOW, "requested_timeout_seconds": 1}), "slow")
                        continue
                    if roll < 0.45:
                        create(http, execute_now=True)
                        continue
                    if roll < 0.65:
                        created = create(http, execute_now=False)
                        if created.status_code == 201:
                            with lock:
                                pending.append(created.json()["id"])
                        continue
                    action = "execute" if roll < 0.85 else "cancel"
                    with lock:
                        # A cancel takes a running request when there is one: it races the
                        # worker's ending.
                        source = running if action == "cancel" and running else pending
                        target = source.pop(rng.randrange(len(source))) if source else None
                    if target is None:  # nothing to execute or cancel yet: create instead
                        create(http, execute_now=True)
                        continue
                    record(http.post(f"/v1/multimodal/requests/{target}/{action}",
                                     json={} if action == "execute" else {"reason": "x"}),
                           action)

        stop = threading.Event()

        def reaper() -> None:
            while not stop.is_set():
                try:
                    manage(env, "reap_timeouts", "--grace", "0")
                except SystemExit as exc:  # manage() exits with the command's stderr
                    with lock:
                        failures.append(f"reaper: ...{str(exc)[-600:]}")
                stop.wait(0.5)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        sweeper = threading.Thread(target=reaper)
        sweeper.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        sweeper.join()

        assert failures == [], failures[:5]
        assert sum(statuses.values()) == OPERATIONS, statuses
        assert statuses[201] > 100 and statuses[429] > 0, statuses  # the limit was reached
        # Idle: the worker has ended every request.
        wait_for(lambda: tenant.get("/v1/multimodal/requests",
                                    params={"state": "processing"}).json() == [],
                 timeout=120, message="every request to end")
        spend = tenant.get("/v1/multimodal/tenants/busy/spend").json()
        stats = tenant.get("/v1/multimodal/stats", params={"since": "2000-01-01T00:00:00Z"})
        charged = sum(Decimal(row["spend_usd"]) for row in stats.json())

    assert "deadlock detected" not in log_path.read_text(errors="replace")
    assert spend["reserved_usd"] in ("0", "0.00")
    assert Decimal(spend["spent_usd"]) == charged
