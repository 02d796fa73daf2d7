"""Revocation and tenant deactivation apply to the very next request on every worker: a real
gunicorn with 2 worker processes, embedded (no shared cache: the auth generation file) and
scaled out (Redis), after each way of revoking — `manage.py revoke_token` in another process,
the service, the admin action, and a tenant deactivated in the admin or in a shell.

Before each change every worker has just accepted (and remembered) the token; until the auth
generation existed they kept answering 200 for AGENT33_TOKEN_CACHE_SECONDS."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from django.test import Client

from agent33.tenancy.models import ApiToken, Tenant
from agent33.tenancy.services import token_revoke
from tests.workers import ROOT, gunicorn_server, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_DB10 = "redis://127.0.0.1:6379/10"
REQUESTS = 16  # one connection each, so both workers answer some


def _statuses(url: str, token: str) -> list[int]:
    statuses = []
    for _ in range(REQUESTS):
        with httpx.Client(base_url=url, timeout=10) as client:  # a new connection each time
            response = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
            statuses.append(response.status_code)
    return statuses


def _revoke_with_command(token: ApiToken, staff, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "revoke_token", token.display_prefix],
        cwd=ROOT, env=worker_env("memory://", **env), capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _revoke_with_service(token: ApiToken, staff, env: dict[str, str]) -> None:
    token_revoke(token=token)


def _revoke_in_the_admin(token: ApiToken, staff, env: dict[str, str]) -> None:
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/tenancy/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302


def _deactivate_tenant_in_the_admin(token: ApiToken, staff, env: dict[str, str]) -> None:
    client = Client()
    client.force_login(staff)
    response = client.post(
        f"/admin/tenancy/tenant/{token.tenant_id}/change/",
        {"name": token.tenant.name, "is_active": ""},
    )
    assert response.status_code == 302, response.content[:500]
    assert not Tenant.objects.get(pk=token.tenant_id).is_active


def _deactivate_tenant_in_a_shell(token: ApiToken, staff, env: dict[str, str]) -> None:
    """A fresh process that never loads the API's authentication: the signals that change
    the generation are connected at start-up."""
    code = (
        "from agent33.tenancy.models import Tenant; "
        f"tenant = Tenant.objects.get(pk={token.tenant_id!r}); "
        "tenant.is_active = False; tenant.save()"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=worker_env("memory://", **env), capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


WAYS = {
    "manage.py revoke_token": _revoke_with_command,
    "token_revoke service": _revoke_with_service,
    "admin action": _revoke_in_the_admin,
    "tenant deactivated in the admin": _deactivate_tenant_in_the_admin,
    "tenant deactivated in manage.py shell": _deactivate_tenant_in_a_shell,
}


@pytest.fixture(params=["embedded", "redis"])
def server_env(request, settings):
    """The environment of the server's processes; this test process (the service and the
    admin run here) shares their cache configuration."""
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        prefix = f"agent33-revocation-test-{uuid.uuid4().hex}"
        settings.CACHES = {"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_DB10, "KEY_PREFIX": prefix,
        }}
        return {"REDIS_URL": REDIS_DB10, "CACHE_KEY_PREFIX": prefix}
    return {}


@pytest.mark.parametrize("revoke", list(WAYS.values()), ids=list(WAYS))
def test_the_next_request_after_revocation_is_401_on_every_worker(
    require_postgres, api_client_for, tenant_a, staff_user_factory, server_env, revoke
):
    client = api_client_for(tenant_a, scopes=["workflows:read"])
    staff = staff_user_factory("root", superuser=True)
    with gunicorn_server(workers=2, **server_env) as url:
        assert _statuses(url, client.plaintext) == [200] * REQUESTS
        revoke(client.token, staff, server_env)
        assert _statuses(url, client.plaintext) == [401] * REQUESTS


def test_an_unwritable_auth_generation_directory_fails_the_system_check(settings, tmp_path):
    from agent33.auth.revocation import check_stamp_directory

    settings.AGENT33_AUTH_STAMP_DIR = str(tmp_path / "missing")
    assert [error.id for error in check_stamp_directory()] == ["agent33.E001"]
    settings.AGENT33_AUTH_STAMP_DIR = str(tmp_path)
    assert check_stamp_directory() == []
