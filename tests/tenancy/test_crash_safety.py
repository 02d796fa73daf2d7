"""`kill -9` of a gunicorn worker in the middle of a bulk ingest loses nothing half-way: the
batch is stored whole or not at all (issue 9)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent33.tenancy.services import token_issue
from outcomes.models import OutcomeEvent
from tests.workers import gunicorn_server, wait_for

BATCH = 10_000


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_a_worker_mid_bulk_stores_all_or_nothing(require_postgres, tenant_a):
    token = token_issue(tenant=tenant_a, scopes=["outcomes:write"]).plaintext
    events = [
        {"domain": f"crash-{n % 7}", "event_type": "run", "metric_type": "latency_ms",
         "value": float(n)}
        for n in range(BATCH)
    ]
    killed_mid_request = 0
    with gunicorn_server(workers=1) as url:
        master = url.master_pid
        for attempt, delay in enumerate((0.05, 0.15, 0.3, 0.5, 0.8)):
            before = OutcomeEvent.all_tenants.filter(tenant=tenant_a).count()
            outcome: dict = {}

            def send(outcome=outcome):
                try:
                    outcome["response"] = httpx.post(
                        f"{url}/v1/outcomes/events/bulk", json={"events": events},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60,
                    )
                except httpx.HTTPError as exc:
                    outcome["error"] = exc

            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(delay)
            [worker] = wait_for(lambda: worker_pids(master), timeout=10, message="a worker")
            os.kill(worker, signal.SIGKILL)
            sender.join(timeout=60)
            stored = OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() - before
            assert stored in (0, BATCH), f"attempt {attempt}: {stored} of {BATCH} stored"
            if "error" in outcome:
                killed_mid_request += 1
            else:
                assert outcome["response"].status_code == 201
                assert stored == BATCH
            # The master replaces the dead worker before the next round.
            wait_for(lambda dead=worker: worker_pids(master) not in ([], [dead]),
                     timeout=20, message="a replacement worker")
            wait_for(lambda: _healthy(url), timeout=20, message="the server to answer again")
    assert killed_mid_request >= 1, "no kill landed while a request was in flight"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
