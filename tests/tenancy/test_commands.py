import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agent33.tenancy.models import ApiToken, Tenant, hash_token_secret

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_tenant_and_refuse_duplicates_and_bad_slugs():
    out, _ = run("create_tenant", "acme", "--name", "ACME")
    assert "Created tenant acme" in out
    assert Tenant.objects.get(slug="acme").name == "ACME"
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme")
    with pytest.raises(CommandError, match="lowercase"):
        run("create_tenant", "Not A Slug!")


def test_issue_token_prints_the_token_alone_on_its_last_line(tenant_a, client):
    out, _ = run("issue_token", "--tenant", "tenant-a", "--scopes", "outcomes:read,workflows:*")
    token_text = out.strip().splitlines()[-1]
    assert token_text.startswith("a33_")
    prefix, secret = token_text.split("_", 2)[1:]
    token = ApiToken.objects.get(prefix=prefix)
    assert token.secret_hash == hash_token_secret(secret)
    assert token.scopes == ["outcomes:read", "workflows:*"]
    response = client.get("/v1/auth/whoami", HTTP_AUTHORIZATION=f"Bearer {token_text}")
    assert response.json()["tenant_id"] == "tenant-a"


def test_issue_operator_token_with_expiry():
    out, _ = run("issue_token", "--all-tenants", "--scopes", "admin", "--expires-in-days", "3")
    token = ApiToken.objects.get(prefix=out.strip().split("_", 2)[1])
    assert token.tenant is None
    assert token.expires_at is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope", "--scopes", "admin"], "Unknown tenant"),
        (["--tenant", "tenant-a", "--scopes", "outcomes:delete"], "Unknown scopes: outcomes:del"),
        (["--tenant", "tenant-a", "--scopes", ","], "At least one scope"),
        (["--all-tenants", "--scopes", "admin", "--expires-in-days", "0"], "positive"),
    ],
)
def test_issue_token_refuses_bad_input(tenant_a, args, message):
    with pytest.raises(CommandError, match=message):
        run("issue_token", *args)
    assert not ApiToken.objects.exists()


def test_revoke_token_by_prefix_and_list_tokens_never_shows_secrets(tenant_a, client):
    out, _ = run("issue_token", "--tenant", "tenant-a", "--scopes", "admin", "--name", "ci")
    token_text = out.strip().splitlines()[-1]
    listing, _ = run("list_tokens", "--tenant", "tenant-a")
    assert "ci" in listing and "active" in listing
    assert token_text.split("_", 2)[2] not in listing
    prefix = "_".join(token_text.split("_")[:2])
    out, _ = run("revoke_token", prefix)
    assert "Revoked" in out
    response = client.get("/v1/auth/whoami", HTTP_AUTHORIZATION=f"Bearer {token_text}")
    assert response.status_code == 401
    assert "revoked" in run("list_tokens")[0]
    with pytest.raises(CommandError, match="already revoked"):
        run("revoke_token", token_text)
    with pytest.raises(CommandError, match="No such token"):
        run("revoke_token", "a33_ffffffffffff")
    with pytest.raises(CommandError, match="Unknown tenant"):
        run("list_tokens", "--tenant", "zzz")


def test_seed_demo_is_idempotent():
    run("seed_demo")
    counts = (Tenant.objects.count(), ApiToken.objects.count())
    out, _ = run("seed_demo")
    assert (Tenant.objects.count(), ApiToken.objects.count()) == counts
    assert "a33_" in out and "demo-admin" in out


def test_bad_command_arguments_exit_non_zero_without_traceback():
    result = subprocess.run(
        [sys.executable, "manage.py", "issue_token", "--scopes", "admin"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "one of the arguments --tenant --all-tenants is required" in result.stderr
