"""X-Request-ID: kept when valid, made when not, on every response and every log line."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import make_client

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("offered", [
    "a", "req-123", "trace.2026-11-27_abc", "A" * 128, "0123456789._-Zz",
])
def test_a_valid_caller_id_is_echoed(client_a, offered):
    response = client_a.get("/v1/auth/whoami", HTTP_X_REQUEST_ID=offered)
    assert response.status_code == 200
    assert response["X-Request-ID"] == offered


@pytest.mark.parametrize("offered", [
    "", "A" * 129, "has space", "semi;colon", "quote\"d", "slash/ed", "ümlaut", "tab\tbed",
    "new\\nline",
])
def test_an_invalid_caller_id_is_replaced_by_a_new_one(client_a, offered):
    response = client_a.get("/v1/auth/whoami", HTTP_X_REQUEST_ID=offered)
    assert response.status_code == 200
    assert GENERATED.fullmatch(response["X-Request-ID"]), response["X-Request-ID"]


def test_every_response_has_a_request_id_and_each_request_its_own(client_a, settings):
    settings.AGENT33_MAX_BODY_BYTES = 10
    responses = [
        client_a.get("/v1/auth/whoami"),
        make_client().get("/v1/auth/whoami"),  # 401
        client_a.get("/v1/operations/traces/trace-missing"),  # 404
        client_a.post("/v1/outcomes/events", {"domain": "x" * 50}, format="json"),  # 413
        make_client().get("/healthz"),
        make_client().get("/admin/login/"),
        make_client().get("/no/such/page"),
    ]
    ids = [response["X-Request-ID"] for response in responses]
    assert [r.status_code for r in responses] == [200, 401, 404, 413, 200, 200, 404]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_log_line_of_a_request_carries_its_id(client_a, settings, capture_logs):
    settings.ROOT_URLCONF = "tests.observability.log_urls"
    logs = capture_logs("json")
    response = client_a.get("/test/chatty", HTTP_X_REQUEST_ID="follow-me-1")
    assert response.status_code == 200
    client_a.get("/test/chatty")  # another request, another id
    lines = [json.loads(line) for line in logs.lines]
    mine = [line for line in lines if line["request_id"] == "follow-me-1"]
    assert [(line["logger"], line["message"]) for line in mine if
            line["logger"] != "django.db.backends"][-3:] == [
        ("tests.observability.view", "working on it"),
        ("tests.observability.view", "still working"),
        ("agent33.access", "GET /test/chatty 200 " + mine[-1]["message"].split()[-2] + " ms"),
    ]
    others = [line for line in lines if line not in mine]
    assert {line["message"] for line in others} >= {"working on it", "still working"}
    assert all(line["request_id"] not in (None, "follow-me-1") for line in others
               if line["logger"] == "tests.observability.view")


@pytest.mark.parametrize(("path", "tenant"), [
    ("/test/failing", "tenant-a"),  # a DRF view: the token names the tenant
    ("/test/failing-page", None),  # a plain Django view reads no token
])
def test_every_line_of_a_failed_request_names_it(client_a, settings, capture_logs, path,
                                                 tenant):
    """Issue 23: Django's "Internal Server Error" line came after the request's context was
    gone, with request_id, tenant, method and path null."""
    settings.ROOT_URLCONF = "tests.observability.log_urls"
    logs = capture_logs("json")
    client_a.raise_request_exception = False  # answer the 500 as a server would
    response = client_a.get(path, HTTP_X_REQUEST_ID="failed-1")
    assert response.status_code == 500
    lines = [json.loads(line) for line in logs.lines]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert "Internal Server Error: " + path in [line["message"] for line in errors]
    assert any("Traceback" in line.get("exc_info", "") for line in errors)
    for line in lines:
        if line["logger"] == "django.db.backends":
            continue
        assert (line["request_id"], line["method"], line["path"]) == ("failed-1", "GET", path), line
    access = next(line for line in lines if line["logger"] == "agent33.access")
    assert access["tenant"] == tenant
    assert [line["tenant"] for line in errors] == [tenant] * len(errors)
