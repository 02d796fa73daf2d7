from datetime import timedelta

import pytest
from django.utils import timezone

from agent33.auth.authentication import forget_cached_tokens
from agent33.tenancy.models import ApiToken
from tests.conftest import make_client


def whoami(client):
    return client.get("/v1/auth/whoami")


@pytest.mark.django_db
def test_whoami_returns_tenant_token_and_scopes(api_client_for, tenant_a):
    client = api_client_for(tenant_a, scopes=["outcomes:read", "workflows:*"], name="runtime")
    response = whoami(client)
    assert response.status_code == 200
    body = response.json()
    assert body["tenant_id"] == "tenant-a"
    assert body["operator"] is False
    assert body["token_name"] == "runtime"
    assert body["scopes"] == ["outcomes:read", "workflows:*"]
    assert body["token_prefix"].startswith("a33_")


@pytest.mark.django_db
def test_operator_token_has_no_tenant(operator_client):
    body = whoami(operator_client).json()
    assert body["tenant_id"] is None
    assert body["operator"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer " + "x" * 5000,
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer a33_abc",
        "Bearer a33__secret",
        "Bearer a33_deadbeef0000_notthesecret",
        "Bearer a b c",
        "Bearer \u00e9\u00e9\u00e9",
    ],
)
def test_garbage_authorization_headers_get_401(client, header):
    response = client.get("/v1/auth/whoami", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] in ("not_authenticated", "authentication_failed")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_wrong_secret_for_a_real_prefix_is_401(client_a):
    prefix = client_a.token.prefix
    response = make_client(f"a33_{prefix}_wrongsecret").get("/v1/auth/whoami")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


@pytest.mark.django_db
def test_revoked_expired_and_inactive_tenant_tokens_get_401(api_client_for, tenant_a):
    revoked = api_client_for(tenant_a)
    ApiToken.objects.filter(pk=revoked.token.pk).update(revoked_at=timezone.now())
    assert whoami(revoked).status_code == 401
    assert whoami(revoked).json()["detail"] == "Token has been revoked."

    expired = api_client_for(tenant_a)
    ApiToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert whoami(expired).json()["detail"] == "Token has expired."

    active = api_client_for(tenant_a)
    assert whoami(active).status_code == 200
    tenant_a.is_active = False
    tenant_a.save()
    response = whoami(active)
    assert response.status_code == 401
    assert response.json()["detail"] == "Tenant is inactive."


@pytest.mark.django_db
def test_last_used_at_is_written_at_most_once_a_minute(client_a, django_assert_num_queries):
    assert client_a.token.last_used_at is None
    whoami(client_a)
    client_a.token.refresh_from_db()
    first = client_a.token.last_used_at
    assert first is not None
    # A second request within the minute performs no write (nor, with the token remembered,
    # any query at all).
    with django_assert_num_queries(0):
        assert whoami(client_a).status_code == 200
    client_a.token.refresh_from_db()
    assert client_a.token.last_used_at == first
    ApiToken.objects.filter(pk=client_a.token.pk).update(
        last_used_at=timezone.now() - timedelta(minutes=2)
    )
    forget_cached_tokens()  # as if the process's memory of the token had aged out
    whoami(client_a)
    client_a.token.refresh_from_db()
    assert client_a.token.last_used_at > first


@pytest.mark.django_db
def test_secret_is_never_stored(api_client_for, tenant_a):
    client = api_client_for(tenant_a)
    secret = client.plaintext.split("_", 2)[2]
    row = ApiToken.objects.filter(pk=client.token.pk).values().get()
    assert all(secret not in str(value) for value in row.values())
    assert client.plaintext not in str(row)


@pytest.mark.django_db
def test_revocation_takes_effect_at_once_in_the_revoking_process(client_a):
    from agent33.tenancy.services import token_revoke

    assert whoami(client_a).status_code == 200  # the token is now remembered
    token_revoke(token=client_a.token)
    assert whoami(client_a).status_code == 401


@pytest.mark.django_db
def test_remembered_token_still_checks_the_secret(client_a):
    assert whoami(client_a).status_code == 200
    forged = make_client(f"a33_{client_a.token.prefix}_forged-secret")
    assert whoami(forged).status_code == 401
