"""Structured logs: the JSON line's fields, the format setting, and no secret in any line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest
from django.core.management import call_command
from pytest_httpserver import HTTPServer

from agent33.observability.logs import JSON_FIELDS
from multimodal.providers.audio import pcm16_to_wav
from tests.conftest import STAFF_PASSWORD, make_client

pytestmark = pytest.mark.django_db

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_json_line_has_every_field(client_a, tenant_a, capture_logs):
    logs = capture_logs("json")
    response = client_a.get("/v1/auth/whoami?secret=not-logged", HTTP_X_REQUEST_ID="fields-1")
    assert response.status_code == 200
    access = [json.loads(line) for line in logs.lines
              if json.loads(line)["logger"] == "agent33.access"]
    assert len(access) == 1
    line = access[0]
    assert set(JSON_FIELDS) <= set(line)
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    assert line["level"] == "INFO"
    assert line["request_id"] == "fields-1"
    assert line["tenant"] == tenant_a.slug
    assert line["token_prefix"] == client_a.token.display_prefix
    assert line["method"] == "GET"
    assert line["path"] == "/v1/auth/whoami"  # the query string is never logged
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "not-logged" not in json.dumps(line)


def test_every_line_is_one_json_object_with_the_same_keys(client_a, operator_client,
                                                          capture_logs):
    logs = capture_logs("json")
    client_a.get("/v1/operations/traces/trace-missing")
    operator_client.get("/v1/operations/hub")
    make_client().get("/v1/auth/whoami")
    parsed = [json.loads(line) for line in logs.lines]
    assert parsed
    assert all(set(JSON_FIELDS) <= set(line) for line in parsed)
    assert {line["tenant"] for line in parsed if line["logger"] == "agent33.access"} == {
        "tenant-a", "*", None
    }
    assert {line["status"] for line in parsed if line["logger"] == "agent33.access"} == {
        404, 200, 401
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_under_gunicorn_each_request_has_one_access_line_the_services(
    require_postgres, client_a, tmp_path
):
    """gunicorn.conf.py: gunicorn's own lines are JSON like the service's, and the only
    access line of a request is the service's (gunicorn builds none of its own)."""
    import httpx

    from tests.workers import gunicorn_server

    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as output, gunicorn_server(
        workers=1, output=output, DEBUG="0", SECRET_KEY="k" * 50, LOG_LEVEL="INFO",
        AGENT33_LOG_FORMAT="json",
    ) as url:
        for n in range(3):
            response = httpx.get(f"{url}/v1/auth/whoami", headers={
                "Authorization": f"Bearer {client_a.plaintext}", "X-Request-ID": f"gu-{n}"})
            assert response.status_code == 200
    # Python's own warnings (whitenoise's "No directory at") are not log records.
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    access = [line for line in lines if line["path"] == "/v1/auth/whoami"]
    assert [(line["logger"], line["request_id"]) for line in access] == [
        ("agent33.access", f"gu-{n}") for n in range(3)
    ]
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # "Booting worker"


def test_a_text_line_names_its_request_id(client_a, capture_logs):
    logs = capture_logs("text")
    client_a.get("/v1/auth/whoami", HTTP_X_REQUEST_ID="texty-7")
    assert any("INFO agent33.access [texty-7] GET /v1/auth/whoami 200" in line
               for line in logs.lines)


def _settings_value(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("DEBUG", "AGENT33_LOG_FORMAT")}
    environment.update(DJANGO_SETTINGS_MODULE="agent33.settings", SECRET_KEY="s" * 50, **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; "
         "django.setup(); import logging; "
         "print(settings.AGENT33_LOG_FORMAT, "
         "type(logging.getLogger().handlers[0].formatter).__name__)"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize(("env", "expected"), [
    ({"DEBUG": "0"}, "json JsonFormatter"),
    ({"DEBUG": "1"}, "text Formatter"),
    ({"DEBUG": "0", "AGENT33_LOG_FORMAT": "text"}, "text Formatter"),
    ({"DEBUG": "1", "AGENT33_LOG_FORMAT": "json"}, "json JsonFormatter"),
])
def test_the_format_follows_debug_unless_set(env, expected):
    result = _settings_value(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_an_unknown_format_is_refused_at_start():
    result = _settings_value(DEBUG="0", AGENT33_LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "AGENT33_LOG_FORMAT must be 'json' or 'text'" in result.stderr


# --- no secret in any line ------------------------------------------------------------------

PROVIDER_KEY = "sk-logtest-PROVIDERKEY-0a1b2c3d4e5f6a7b8c9d"
NEW_USER_PASSWORD = "n3w-Us3r-LOGTEST-passw0rd!"


@pytest.fixture
def fake_openai():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


def test_no_secret_reaches_any_log_line(
    client_a, operator_client, tenant_a, settings, capture_logs, staff_user_factory,
    fake_openai, django_capture_on_commit_callbacks, capsys,
):
    from cryptography.fernet import Fernet
    from django.db import connection

    settings.AGENT33_SECRET_KEYS = [Fernet.generate_key().decode()]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name in ("OPENAI_API_KEY", "ELEVENLABS_API_KEY"):
        setattr(settings, name, "")
    logs = capture_logs("json")
    connection.force_debug_cursor = True  # every SQL statement and its parameters, too
    try:
        # A provider key, stored through the API and then used on a real (loopback) call.
        url = f"/v1/multimodal/tenants/{tenant_a.slug}/providers/openai"
        assert client_a.put(url, {"api_key": PROVIDER_KEY}, format="json").status_code == 200
        assert operator_client.put(url, {"base_url": fake_openai.url_for("/v1")},
                                   format="json").status_code == 200
        fake_openai.expect_request("/v1/audio/speech").respond_with_data(
            pcm16_to_wav(b"\x01\x00" * 2400, 24000), content_type="audio/wav")
        with django_capture_on_commit_callbacks(execute=True):
            created = client_a.post("/v1/multimodal/requests",
                                    {"modality": "text_to_speech", "input_text": "hello",
                                     "provider": "openai"}, format="json")
        assert created.status_code == 201, created.content
        request = client_a.get(f"/v1/multimodal/requests/{created.json()['id']}").json()
        assert request["state"] == "completed", request

        # A token, issued by the command and used (and once used wrongly).
        call_command("issue_token", "--tenant", tenant_a.slug, "--scopes", "workflows:read")
        token = capsys.readouterr().out.strip().splitlines()[-1]
        assert make_client(token).get("/v1/auth/whoami").status_code == 200
        assert make_client(token[:-2] + "xx").get("/v1/auth/whoami").status_code == 401

        # A password: a staff login (one failed, one right) and a user created in the admin.
        staff_user_factory("root", superuser=True)
        browser = make_client()
        browser.post("/admin/login/", {"username": "root", "password": STAFF_PASSWORD + "x"})
        login = browser.post("/admin/login/?next=/admin/",
                             {"username": "root", "password": STAFF_PASSWORD})
        assert login.status_code == 302
        added = browser.post("/admin/auth/user/add/", {
            "username": "newcomer", "password1": NEW_USER_PASSWORD,
            "password2": NEW_USER_PASSWORD, "usable_password": "true",
        })
        assert added.status_code == 302, added.content[:500]
    finally:
        connection.force_debug_cursor = False

    text = "\n".join(logs.lines)
    assert '"logger": "django.db.backends"' in text  # the capture saw the SQL
    assert '"logger": "httpx"' in text  # and the provider call
    assert '"path": "/admin/auth/user/add/"' in text  # and the admin's requests
    assert f'"token_prefix": "a33_{token.split("_")[1]}"' in text  # and the token's use
    for secret in (PROVIDER_KEY, token, token.split("_", 2)[2], STAFF_PASSWORD,
                   NEW_USER_PASSWORD):
        assert secret not in text, f"a log line contains {secret[:12]}…"
