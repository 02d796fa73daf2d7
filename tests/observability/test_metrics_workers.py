"""GET /metrics from a real gunicorn with two workers on PostgreSQL: whichever worker answers
the scrape, it counts the requests both served, keeps a killed worker's counts, merges a
Celery worker's series, and its domain series are the database's rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent33.auth.scopes import METRICS_READ
from agent33.tenancy.services import token_issue
from tests.observability.helpers import samples, value
from tests.workers import gunicorn_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RESPONSES = "django_http_responses_total_by_status_view_method_total"


def _worker_pids(metrics_dir: Path) -> set[str]:
    """The gunicorn workers that have counted something (one file set per process)."""
    return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}


def _whoami_count(url: str, operator: str) -> float:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {operator}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    return value(samples(response.text), RESPONSES, status="200", view="whoami", method="GET")


def test_two_workers_one_answer(require_postgres, tenant_a, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    (metrics_dir).mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"")  # a previous run's leftover
    operator = token_issue(tenant=None, scopes=[METRICS_READ]).plaintext
    token = token_issue(tenant=tenant_a, scopes=["admin"]).plaintext
    headers = {"Authorization": f"Bearer {token}"}

    # A Celery worker's process on the same host records provider retries in its own dir.
    worker_dir = tmp_path / "worker-metrics"
    worker_dir.mkdir()
    subprocess.run(
        [sys.executable, "-c", "from multimodal.providers.metrics import provider_retries; "
         "provider_retries.labels('openai', '503').inc(3)"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(worker_dir)},
        cwd=Path(__file__).resolve().parents[2], check=True,
    )

    with gunicorn_server(workers=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                         AGENT33_METRICS_MERGE_DIRS=str(worker_dir)) as url:
        assert not (metrics_dir / "counter_999999.db").exists()  # emptied at start
        sent = 0
        # A new connection per request, so the kernel spreads them over both workers.
        while len(_worker_pids(metrics_dir)) < 2 or sent < 40:
            assert httpx.get(f"{url}/v1/auth/whoami", headers=headers).status_code == 200
            sent += 1
            assert sent < 2000, "the requests never reached the second worker"
        for _ in range(3):  # whichever worker answers the scrape, it counts them all
            assert _whoami_count(url, operator) == sent

        # Processes written through the server show in the domain series.
        created = [
            httpx.post(f"{url}/v1/operations/traces", json={"task_id": f"t{n}"},
                       headers=headers).json()["id"]
            for n in range(3)
        ]
        completed = httpx.post(f"{url}/v1/operations/traces/{created[0]}/complete",
                               json={"status": "completed"}, headers=headers)
        assert completed.status_code == 200
        scraped = samples(httpx.get(f"{url}/metrics",
                                    headers={"Authorization": f"Bearer {operator}"}).text)
        assert value(scraped, "agent33_processes", type="trace", status="running") == 2
        assert value(scraped, "agent33_processes", type="trace", status="completed") == 1
        assert value(scraped, "agent33_provider_retries_total", provider="openai",
                     reason="503") == 3

        # A worker killed outright: gunicorn replaces it, and what it counted still counts.
        victim = int(sorted(_worker_pids(metrics_dir))[0])
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in (kids := _children(url.master_pid)) and len(kids) == 2,
                 timeout=30, message="gunicorn to replace the killed worker")
        more = 10
        for _ in range(more):
            assert httpx.get(f"{url}/v1/auth/whoami", headers=headers).status_code == 200
        assert _whoami_count(url, operator) == sent + more


def _children(pid: int) -> set[int]:
    tasks = Path(f"/proc/{pid}/task")
    found = set()
    for task in tasks.iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found
