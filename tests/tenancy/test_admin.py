import re

import pytest

from agent33.tenancy.models import ApiToken
from agent33.tenancy.services import token_issue
from tests.conftest import STAFF_PASSWORD


@pytest.fixture
def limited_staff(staff_user_factory, tenant_a, tenant_b, client):
    user = staff_user_factory("alice", tenants=[tenant_a])
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tenancy"))
    client.login(username="alice", password=STAFF_PASSWORD)
    return client


def test_limited_staff_see_only_granted_tenants_and_their_tokens(limited_staff, tenant_a, tenant_b):
    token_issue(tenant=tenant_a, scopes=["admin"], name="token-of-a")
    token_issue(tenant=tenant_b, scopes=["admin"], name="token-of-b")
    token_issue(tenant=None, scopes=["admin"], name="operator-token")

    tenants = limited_staff.get("/admin/tenancy/tenant/").content.decode()
    assert "tenant-a" in tenants and "tenant-b" not in tenants
    assert limited_staff.get("/admin/tenancy/tenant/tenant-b/change/").status_code == 302

    tokens = limited_staff.get("/admin/tenancy/apitoken/").content.decode()
    assert "token-of-a" in tokens
    assert "token-of-b" not in tokens and "operator-token" not in tokens


def test_superuser_sees_every_tenant(staff_user_factory, tenant_a, tenant_b, client):
    staff_user_factory("root", superuser=True)
    client.login(username="root", password=STAFF_PASSWORD)
    page = client.get("/admin/tenancy/tenant/").content.decode()
    assert "tenant-a" in page and "tenant-b" in page


def test_token_created_in_admin_is_shown_once_and_works(limited_staff, tenant_a, client):
    response = limited_staff.post(
        "/admin/tenancy/apitoken/add/",
        {"tenant": "tenant-a", "name": "from-admin", "scopes": ["outcomes:read", "admin"]},
        follow=True,
    )
    assert response.status_code == 200
    shown = re.search(r"a33_[0-9a-f]{12}_[A-Za-z0-9_-]+", response.content.decode()).group(0)
    token = ApiToken.objects.get(name="from-admin")
    assert token.created_by.username == "alice"
    assert shown.split("_", 2)[2] not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    whoami = client.get("/v1/auth/whoami", HTTP_AUTHORIZATION=f"Bearer {shown}")
    assert whoami.json()["token_name"] == "from-admin"


def test_limited_staff_cannot_issue_tokens_for_other_tenants(limited_staff, tenant_b):
    response = limited_staff.post(
        "/admin/tenancy/apitoken/add/",
        {"tenant": "tenant-b", "name": "sneaky", "scopes": ["admin"]},
    )
    assert response.status_code == 200  # the form comes back with an error
    assert not ApiToken.objects.filter(name="sneaky").exists()
    response = limited_staff.post(
        "/admin/tenancy/apitoken/add/", {"name": "operator-attempt", "scopes": ["admin"]}
    )
    assert not ApiToken.objects.filter(name="operator-attempt").exists()


def test_revoke_action(limited_staff, tenant_a, client):
    issued = token_issue(tenant=tenant_a, scopes=["admin"], name="to-revoke")
    limited_staff.post(
        "/admin/tenancy/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [issued.token.pk]},
    )
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    response = client.get("/v1/auth/whoami", HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    assert response.status_code == 401
