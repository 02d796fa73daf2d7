"""Nothing leaks and no body is misread (DESIGN §7.2): `Cache-Control: no-store` on API
answers and downloads, Swagger UI served by the service itself, `/readyz` without database
internals, and chunked request bodies read correctly (gunicorn) or refused with 411."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.db import OperationalError

from tests.workers import ROOT, free_port, gunicorn_server, stop_process, wait_for, worker_env

# --- Cache-Control --------------------------------------------------------------------------


@pytest.mark.django_db
def test_authenticated_answers_and_errors_are_never_stored_by_caches(client_a, tenant_a):
    from tests.factories.operations import TraceFactory

    trace = TraceFactory(tenant=tenant_a)
    answers = [
        client_a.get("/v1/auth/whoami"),
        client_a.get("/v1/operations/traces"),
        client_a.get(f"/v1/operations/traces/{trace.pk}"),
        client_a.get("/v1/operations/traces/trace-missing"),
        client_a.post("/v1/operations/workflow-runs", {"workflow_name": "w"}, format="json"),
        client_a.post("/v1/operations/workflow-runs", {}, format="json"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 201, 400]
    assert all(a["Cache-Control"] == "no-store" for a in answers)


@pytest.mark.django_db
def test_artifact_downloads_are_never_stored_by_caches(client_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories.multimodal import wav_bytes

    created = client_a.post(
        "/v1/multimodal/artifacts",
        {"file": SimpleUploadedFile("a.wav", wav_bytes(), content_type="audio/wav")},
    )
    assert created.status_code == 201
    download = client_a.get(f"/v1/multimodal/artifacts/{created.json()['id']}/content")
    assert download.status_code == 200
    assert download["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_refusals_without_a_token_are_not_stored_either(anonymous_client):
    response = anonymous_client.get("/v1/operations/traces")
    assert response.status_code == 401
    assert response["Cache-Control"] == "no-store"


# --- Swagger UI -----------------------------------------------------------------------------


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.mark.django_db
def test_swagger_ui_loads_nothing_from_another_host(client):
    response = client.get("/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    parser = _Sources()
    parser.feed(page)
    assert parser.urls, "the page loads its scripts and styles from somewhere"
    foreign = [url for url in parser.urls if urlsplit(url).netloc or url.startswith("//")]
    assert foreign == []
    # Nor does an inline script name one (the UI's own bundle, its CSS, the schema URL).
    assert re.findall(r"https?://", page) == []
    for url in parser.urls:
        if url.startswith("/static/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            b"".join(asset.streaming_content) if asset.streaming else asset.content


# --- /readyz --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_says_ok_and_nothing_more(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_tells_an_anonymous_caller_only_unavailable_and_logs_why(
    client, monkeypatch, caplog
):
    from django.db import connection

    secret = 'connection to server at "db.internal" (10.1.2.3), port 6432 failed'

    def refuse(*args, **kwargs):
        raise OperationalError(secret)

    monkeypatch.setattr(connection, "cursor", refuse)
    with caplog.at_level(logging.ERROR, logger="agent33.api"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "6432" not in response.content.decode()
    assert any(secret in (record.exc_text or str(record.exc_info)) for record in caplog.records)


# --- chunked request bodies -----------------------------------------------------------------


def _raw_chunked_post(url: str, path: str, token: str, body: bytes) -> tuple[int, dict]:
    """POST `body` with Transfer-Encoding: chunked (no Content-Length) over a raw socket, as
    clients that stream do; returns the status and the JSON answer."""
    address = urlsplit(url)
    chunks = b"".join(
        f"{len(body[i:i + 7]):x}\r\n".encode() + body[i:i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address.hostname}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunks + b"0\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    return status, json.loads(payload)


def _dechunk(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, payload = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, payload = out + payload[:size], payload[size + 2:]
    return out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_whole_by_gunicorn(require_postgres, api_client_for, tenant_a):
    from operations.models import WorkflowRun

    client = api_client_for(tenant_a, scopes=["workflows:write"])
    body = json.dumps({"workflow_name": "sent-in-chunks", "trigger_type": "stream"}).encode()
    with gunicorn_server(workers=1, AGENT33_MAX_BODY_BYTES="2000") as url:
        status, answer = _raw_chunked_post(url, "/v1/operations/workflow-runs",
                                           client.plaintext, body)
        assert status == 201, answer
        assert answer["workflow_name"] == "sent-in-chunks"
        assert answer["trigger_type"] == "stream"
        big = json.dumps({"workflow_name": "w", "trigger_type": "x" * 3000}).encode()
        status, answer = _raw_chunked_post(url, "/v1/operations/workflow-runs",
                                           client.plaintext, big)
        assert status == 413
        assert answer["code"] == "request_too_large"
    assert list(WorkflowRun.all_tenants.values_list("workflow_name", flat=True)) == [
        "sent-in-chunks"
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_server_that_cannot_end_a_chunked_body_refuses_it_with_411(
    require_postgres, api_client_for, tenant_a
):
    """runserver hands the raw stream over; reading it as empty made the request 'succeed'
    with defaults."""
    import httpx

    from operations.models import WorkflowRun

    client = api_client_for(tenant_a, scopes=["workflows:write"])
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=worker_env("memory://"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, message="runserver to start")
        body = json.dumps({"workflow_name": "sent-in-chunks"}).encode()
        status, answer = _raw_chunked_post(url, "/v1/operations/workflow-runs",
                                           client.plaintext, body)
    finally:
        stop_process(process)
    assert status == 411
    assert answer == {
        "detail": "A chunked request body cannot be read here; send it with a Content-Length.",
        "code": "length_required",
    }
    assert not WorkflowRun.all_tenants.exists()


@pytest.mark.django_db
def test_the_test_client_path_refuses_a_chunked_body_it_cannot_read(client_a):
    response = client_a.generic(
        "POST", "/v1/operations/workflow-runs", b"", content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
