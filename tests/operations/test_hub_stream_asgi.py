"""The live hub stream as deployed: gunicorn with a uvicorn worker serving agent33.asgi in
stream-only mode (compose's `stream` service), on PostgreSQL. Each open stream waits on the
event loop (no thread) and holds no database connection; the broker's LISTEN brings the
committed changes; every other path is a 404 there."""

from __future__ import annotations

import threading

import httpx
import pytest

from operations import services
from operations.models import WorkflowRun
from operations.transitions import Origin
from tests import workers
from tests.workers import gunicorn_server, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STREAM = "/v1/operations/hub/stream"


class Listener(threading.Thread):
    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token, self.text, self.status = url, token, "", None

    def run(self):
        try:
            with httpx.stream("GET", f"{self.url}{STREAM}", params={"duration": "20"},
                              headers={"Authorization": f"Bearer {self.token}"},
                              timeout=30) as response:
                self.status = response.status_code
                for chunk in response.iter_text():
                    self.text += chunk
        except httpx.RemoteProtocolError:
            pass  # the test stopped the server while the stream was open


@pytest.mark.django_db(transaction=True)
def test_streams_on_the_asgi_server(require_postgres, api_client_for, tenant_a, tenant_b,
                                    tmp_path):
    from django.db import connection

    workers.test_database_url()  # PostgreSQL only
    mine = api_client_for(tenant_a, scopes=["workflows:read"])
    theirs = api_client_for(tenant_b, scopes=["workflows:read"])
    with open(tmp_path / "server.log", "w") as log, gunicorn_server(
            workers=1, output=log, application="agent33.asgi:application",
            extra_args=("-k", "uvicorn_worker.UvicornWorker"),
            AGENT33_ASGI_STREAM_ONLY="1", DB_POOL_SIZE="2") as url:
        # Stream-only: the API is not served here, and no body is read.
        other = httpx.get(f"{url}/v1/operations/hub",
                          headers={"Authorization": f"Bearer {mine.plaintext}"})
        assert other.status_code == 404 and other.json()["code"] == "not_found"

        # More streams than the pool has connections: an open stream holds none.
        listeners = [Listener(url, mine.plaintext) for _ in range(3)]
        foreign = Listener(url, theirs.plaintext)
        for listener in [*listeners, foreign]:
            listener.start()
        wait_for(lambda: all("hub stream" in x.text for x in [*listeners, foreign]),
                 timeout=20, message="the streams to open")

        from agent33.tenancy.context import tenant_scope

        origin = Origin(actor="token:test", path="api", scopes=frozenset({"admin"}))
        with tenant_scope(tenant_a):
            run = services.workflow_run_create(tenant=tenant_a, workflow_name="asgi-live",
                                               status="running")
            services.workflow_run_transition(run=WorkflowRun.objects.get(pk=run.pk),
                                             origin=origin, status="paused")
        wait_for(lambda: all('"status":"paused"' in x.text for x in listeners), timeout=20,
                 message="every stream of tenant A to get the change")
        for listener in listeners:
            assert listener.status == 200
            assert listener.text.index('"status":"running"') < listener.text.index(
                '"status":"paused"')
        assert run.pk not in foreign.text

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()")
            (others,) = cursor.fetchone()
        # The broker's LISTEN connection and at most the pool's idle ones: not one per stream.
        assert others <= 3, others
