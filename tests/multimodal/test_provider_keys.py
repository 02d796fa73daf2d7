"""Stored provider keys: the API (scopes, tenants, operators, base_url rule), encryption at
rest (no plaintext anywhere: database, pg_dump, responses, logs, admin pages), rotation, the
admin and the configuration errors."""

from __future__ import annotations

import logging
import shutil
import subprocess
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from agent33.auth.scopes import MULTIMODAL_READ, MULTIMODAL_WRITE
from agent33.tenancy.context import tenant_scope
from multimodal import encryption, provider_keys
from multimodal.models import ProviderCredential
from tests.conftest import STAFF_PASSWORD

pytestmark = pytest.mark.django_db

BASE = "/v1/multimodal/tenants"
KEY = "sk-proj-PLAINTEXT-a1b2c3d4e5f6a7b8c9d0e1f2"
OTHER_KEY = "sk-proj-REPLACEMENT-0f1e2d3c4b5a69788796a5b4"


def keys_url(tenant, provider: str | None = None) -> str:
    slug = tenant if isinstance(tenant, str) else tenant.slug
    return f"{BASE}/{slug}/providers" + (f"/{provider}" if provider else "")


def put(client, tenant, provider: str, **body):
    return client.put(keys_url(tenant, provider), body, format="json")


def stored(tenant, provider: str) -> ProviderCredential:
    return ProviderCredential.all_tenants.get(tenant=tenant, provider=provider)


def make_credential(tenant, provider: str = "openai", key: str = KEY, **fields):
    with tenant_scope(tenant):  # as the tenant admin's API call runs
        return provider_keys.credential_set(tenant=tenant, actor="test", provider=provider,
                                            api_key=key, **fields)


# --- CRUD, scopes, tenants --------------------------------------------------------------


def test_tenant_admin_stores_lists_replaces_and_deletes_a_key(client_a, tenant_a):
    response = put(client_a, tenant_a, "openai", api_key=KEY, default_model="gpt-4o-mini")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"provider", "key_last4", "base_url", "default_model", "updated_at"}
    assert body["provider"] == "openai"
    assert body["key_last4"] == KEY[-4:]
    assert body["base_url"] == "" and body["default_model"] == "gpt-4o-mini"

    credential = stored(tenant_a, "openai")
    assert credential.api_key_encrypted != KEY and KEY not in credential.api_key_encrypted
    assert credential.api_key() == KEY
    assert credential.updated_by.startswith("token:")

    assert put(client_a, tenant_a, "elevenlabs", api_key=OTHER_KEY).status_code == 200
    listed = client_a.get(keys_url(tenant_a))
    assert listed.status_code == 200
    assert [row["provider"] for row in listed.json()] == ["elevenlabs", "openai"]

    # Replacing the key keeps what was left out (the default model here).
    replaced = put(client_a, tenant_a, "openai", api_key=OTHER_KEY)
    assert replaced.status_code == 200
    assert replaced.json()["key_last4"] == OTHER_KEY[-4:]
    assert replaced.json()["default_model"] == "gpt-4o-mini"
    assert stored(tenant_a, "openai").api_key() == OTHER_KEY
    assert ProviderCredential.all_tenants.filter(tenant=tenant_a).count() == 2
    # ... and null / "" clear it.
    assert put(client_a, tenant_a, "openai", default_model=None).json()["default_model"] == ""

    deleted = client_a.delete(keys_url(tenant_a, "openai"))
    assert deleted.status_code == 204 and deleted.content == b""
    assert not ProviderCredential.all_tenants.filter(tenant=tenant_a, provider="openai").exists()
    again = client_a.delete(keys_url(tenant_a, "openai"))
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    assert [row["provider"] for row in client_a.get(keys_url(tenant_a)).json()] == ["elevenlabs"]


@pytest.mark.parametrize("scopes", [[MULTIMODAL_WRITE], [MULTIMODAL_READ, MULTIMODAL_WRITE]])
def test_write_and_read_tokens_can_neither_read_nor_set_keys(api_client_for, tenant_a, scopes):
    make_credential(tenant_a)
    client = api_client_for(tenant_a, scopes=scopes)
    for response in (
        client.get(keys_url(tenant_a)),
        put(client, tenant_a, "openai", api_key=OTHER_KEY),
        client.delete(keys_url(tenant_a, "openai")),
    ):
        assert response.status_code == 403
        assert response.json()["detail"] == "Missing required scope: multimodal:admin"
    assert stored(tenant_a, "openai").api_key() == KEY


def test_another_tenant_gets_404_and_its_list_shows_nothing(client_a, client_b, tenant_a,
                                                            tenant_b):
    make_credential(tenant_a)
    assert client_b.get(keys_url(tenant_a)).status_code == 404
    assert put(client_b, tenant_a, "openai", api_key=OTHER_KEY).status_code == 404
    assert client_b.delete(keys_url(tenant_a, "openai")).status_code == 404
    assert client_b.get(keys_url(tenant_b)).json() == []
    assert stored(tenant_a, "openai").api_key() == KEY


def test_operator_token_manages_any_tenants_keys_and_sets_base_url(operator_client, client_a,
                                                                   tenant_a, tenant_b):
    # The tenant admin stores the key; the operator points it somewhere without knowing it.
    assert put(client_a, tenant_a, "openai-compatible", api_key=KEY).status_code == 200
    response = put(operator_client, tenant_a, "openai-compatible",
                   base_url="http://gateway.internal:8080/v1")
    assert response.status_code == 200, response.content
    assert response.json()["base_url"] == "http://gateway.internal:8080/v1"
    assert response.json()["key_last4"] == KEY[-4:]
    assert stored(tenant_a, "openai-compatible").api_key() == KEY

    # A tenant admin replacing its key keeps the operator's base_url.
    assert put(client_a, tenant_a, "openai-compatible", api_key=OTHER_KEY).json()[
        "base_url"] == "http://gateway.internal:8080/v1"

    created = put(operator_client, tenant_b, "openai", api_key=KEY,
                  base_url="https://api.openai.com/v1")
    assert created.status_code == 200
    assert [r["provider"] for r in operator_client.get(keys_url(tenant_b)).json()] == ["openai"]
    assert operator_client.delete(keys_url(tenant_b, "openai")).status_code == 204
    assert operator_client.get(keys_url("no-such-tenant")).status_code == 404
    assert put(operator_client, "no-such-tenant", "openai", api_key=KEY).status_code == 404


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/latest", "", None])
def test_tenant_token_sending_base_url_gets_403(client_a, tenant_a, base_url):
    response = put(client_a, tenant_a, "openai", api_key=KEY, base_url=base_url)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "base_url_operator_only"
    assert "base_url" in body["detail"] and "operator" in body["detail"]
    assert not ProviderCredential.all_tenants.filter(tenant=tenant_a).exists()


def test_unknown_provider_is_404(client_a, operator_client, tenant_a):
    for name in ("espeak", "anthropic", "OpenAI"):
        response = put(client_a, tenant_a, name, api_key=KEY)
        assert response.status_code == 404, name
        assert response.json()["code"] == "unknown_provider"
        assert "openai" in response.json()["detail"]
        assert client_a.delete(keys_url(tenant_a, name)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "api_key"),  # a new credential needs a key
        ({"api_key": "short"}, "api_key"),
        ({"api_key": "sk-with space-1234567"}, "api_key"),
        ({"api_key": "sk-newline\r\nX-Evil: 1"}, "api_key"),
        ({"api_key": ["sk-list-123456789"]}, "api_key"),
        ({"api_key": "x" * 501}, "api_key"),
        ({"api_key": KEY, "default_model": "has space"}, "default_model"),
        ({"api_key": KEY, "default_model": "text_to_speech=tts-1;bogus=m"}, "default_model"),
        ({"api_key": KEY, "default_model": "text_to_speech="}, "default_model"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(client_a, tenant_a, body, field):
    response = client_a.put(keys_url(tenant_a, "openai"), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{field}:") or field in response.json()[
        "errors"]
    assert not ProviderCredential.all_tenants.filter(tenant=tenant_a).exists()


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://files.example.com",
        "https://user:pass@api.example.com/v1",
        "https://api.example.com/v1?key=1",
        "https://api.example.com/v1#frag",
        "http://",
        "https://api.example.com:99999/v1",
        "not a url",
        "https://" + "a" * 600 + ".com",
        "https://api.example.com/\x00",
    ],
)
def test_operator_base_url_is_validated(operator_client, tenant_a, base_url):
    response = put(operator_client, tenant_a, "openai", api_key=KEY, base_url=base_url)
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("base_url:")
    assert "pass@" not in response.content.decode()


def test_a_json_list_body_is_a_400_not_a_500(client_a, tenant_a):
    response = client_a.put(keys_url(tenant_a, "openai"), [KEY], format="json")
    assert response.status_code == 400


# --- configuration of the encryption keys -----------------------------------------------


def test_without_secret_keys_in_production_storing_is_refused_with_503(client_a, tenant_a,
                                                                       settings):
    settings.AGENT33_SECRET_KEYS = []
    settings.DEBUG = False
    response = put(client_a, tenant_a, "openai", api_key=KEY)
    assert response.status_code == 503
    assert response.json()["code"] == "encryption_not_configured"
    assert "AGENT33_SECRET_KEYS" in response.json()["detail"]
    assert KEY not in response.content.decode()
    assert not ProviderCredential.all_tenants.exists()


def test_without_secret_keys_in_debug_a_derived_key_is_used_with_a_warning(
    client_a, tenant_a, settings, caplog
):
    settings.AGENT33_SECRET_KEYS = []
    settings.DEBUG = True
    settings.SECRET_KEY = "debug-only-secret-for-this-test"
    with caplog.at_level(logging.WARNING, logger="agent33.multimodal"):
        assert put(client_a, tenant_a, "openai", api_key=KEY).status_code == 200
    assert "AGENT33_SECRET_KEYS is empty" in caplog.text
    token = stored(tenant_a, "openai").api_key_encrypted
    fallback = Fernet(encryption.debug_fallback_key("debug-only-secret-for-this-test"))
    assert fallback.decrypt(token.encode()).decode() == KEY


def test_a_malformed_secret_key_is_a_clear_503_without_key_material(client_a, tenant_a,
                                                                    settings):
    settings.AGENT33_SECRET_KEYS = [Fernet.generate_key().decode(), "not-a-fernet-key-secret"]
    response = put(client_a, tenant_a, "openai", api_key=KEY)
    assert response.status_code == 503
    assert response.json()["code"] == "encryption_key_invalid"
    assert "entry 2 of 2" in response.json()["detail"]
    assert "not-a-fernet-key-secret" not in response.content.decode()


# --- rotation ---------------------------------------------------------------------------


def test_rotation_keeps_old_keys_readable_and_reencrypts(tenant_a, tenant_b, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.AGENT33_SECRET_KEYS = [old]
    make_credential(tenant_a, "openai", KEY)
    make_credential(tenant_b, "elevenlabs", OTHER_KEY)

    # New key first, old one after it: everything stays readable before rotating.
    settings.AGENT33_SECRET_KEYS = [new, old]
    assert stored(tenant_a, "openai").api_key() == KEY
    assert not encryption.is_current(stored(tenant_a, "openai").api_key_encrypted)
    # A key written now is under the new key already.
    make_credential(tenant_a, "elevenlabs", OTHER_KEY)

    out = StringIO()
    call_command("rotate_provider_keys", stdout=out)
    assert "3 of 3 provider keys re-encrypted" in out.getvalue()
    assert "2 were under an older key" in out.getvalue()
    assert KEY not in out.getvalue()

    # The old key can go: every row decrypts with the new one alone.
    settings.AGENT33_SECRET_KEYS = [new]
    assert stored(tenant_a, "openai").api_key() == KEY
    assert stored(tenant_b, "elevenlabs").api_key() == OTHER_KEY
    assert stored(tenant_a, "elevenlabs").api_key() == OTHER_KEY
    Fernet(new).decrypt(stored(tenant_a, "openai").api_key_encrypted.encode())


def test_rotation_dry_run_changes_nothing(tenant_a, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.AGENT33_SECRET_KEYS = [old]
    make_credential(tenant_a)
    before = stored(tenant_a, "openai").api_key_encrypted
    settings.AGENT33_SECRET_KEYS = [new, old]
    out = StringIO()
    call_command("rotate_provider_keys", "--dry-run", stdout=out)
    assert "1 of 1 provider keys would be re-encrypted" in out.getvalue()
    assert stored(tenant_a, "openai").api_key_encrypted == before


def test_rotation_reports_undecryptable_rows_and_finishes_the_others(tenant_a, tenant_b,
                                                                     settings):
    lost, kept = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.AGENT33_SECRET_KEYS = [lost]
    make_credential(tenant_a, "openai")
    settings.AGENT33_SECRET_KEYS = [kept]
    make_credential(tenant_b, "openai")
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("rotate_provider_keys", stdout=out)
    message = str(failure.value)
    assert "tenant-a/openai" in message and "AGENT33_SECRET_KEYS" in message
    assert "tenant-b" not in message
    assert "1 of 2 provider keys re-encrypted" in out.getvalue()
    assert KEY not in message + out.getvalue() and lost not in message


def test_rotation_without_keys_configured_is_a_clear_error(settings):
    settings.AGENT33_SECRET_KEYS = []
    with pytest.raises(CommandError, match="AGENT33_SECRET_KEYS is empty"):
        call_command("rotate_provider_keys")


def test_rotation_moves_keys_written_with_the_debug_fallback(tenant_a, settings):
    settings.AGENT33_SECRET_KEYS = []
    settings.DEBUG = True
    make_credential(tenant_a)
    settings.DEBUG = False
    real = Fernet.generate_key().decode()
    settings.AGENT33_SECRET_KEYS = [real]
    with pytest.raises(encryption.UndecryptableKey):
        stored(tenant_a, "openai").api_key()
    call_command("rotate_provider_keys", stdout=StringIO())
    assert stored(tenant_a, "openai").api_key() == KEY


# --- the plaintext appears nowhere ------------------------------------------------------


def dump_database_text() -> str:
    """Every row of every table as text: what a database dump would reveal."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts)


def store_keys_every_way(client_a, operator_client, tenant_a, tenant_b, admin_client):
    responses = [
        put(client_a, tenant_a, "openai", api_key=KEY),
        put(operator_client, tenant_b, "openai-compatible", api_key=KEY,
            base_url="http://127.0.0.1:9/v1"),
        put(client_a, tenant_a, "elevenlabs", api_key="short"),  # a 400 must not echo it
        put(client_a, tenant_a, "openai", api_key=KEY, base_url="http://x"),  # 403
    ]
    admin_client.post(
        "/admin/multimodal/providercredential/add/",
        {"tenant": tenant_b.pk, "provider": "elevenlabs", "api_key": KEY,
         "base_url": "", "default_model": ""},
    )
    responses.append(client_a.get(keys_url(tenant_a)))
    responses.append(operator_client.get(keys_url(tenant_b)))
    return responses


@pytest.fixture
def admin_client_for(client, staff_user_factory):
    def login(*tenants, superuser=False):
        user = staff_user_factory(f"staff{len(tenants)}{superuser}", tenants=tenants,
                                  superuser=superuser)
        assert client.login(username=user.username, password=STAFF_PASSWORD)
        return client

    return login


def test_plaintext_is_not_in_the_database_responses_or_logs(client_a, operator_client,
                                                            tenant_a, tenant_b,
                                                            admin_client_for, caplog):
    admin = admin_client_for(tenant_a, tenant_b)
    with caplog.at_level(logging.DEBUG):
        responses = store_keys_every_way(client_a, operator_client, tenant_a, tenant_b, admin)
    assert ProviderCredential.all_tenants.count() == 3
    for response in responses:
        assert KEY not in response.content.decode(), response.content
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY not in str(record.args)
    dump = dump_database_text()
    assert KEY[-4:] in dump  # the dump really covers the credentials table
    assert KEY not in dump
    assert LogEntry.objects.filter(object_repr__contains=KEY[-4:]).exists()


@pytest.mark.django_db(transaction=True)
def test_plaintext_is_not_in_pg_dump(client_a, operator_client, tenant_a, tenant_b,
                                     admin_client_for, require_postgres):
    pg_dump = shutil.which("pg_dump")
    if not pg_dump:
        pytest.skip("pg_dump is not installed")
    store_keys_every_way(client_a, operator_client, tenant_a, tenant_b,
                         admin_client_for(tenant_a, tenant_b))
    db = connection.settings_dict
    env = {"PGPASSWORD": db.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"}
    command = [pg_dump, "--data-only", "--no-owner", "-d", db["NAME"],
               "-h", db.get("HOST") or "127.0.0.1", "-p", str(db.get("PORT") or 5432),
               "-U", db.get("USER") or "postgres"]
    dumped = subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)
    if dumped.returncode != 0 and b"version mismatch" in dumped.stderr:
        pytest.skip(f"pg_dump cannot dump this server: {dumped.stderr[:200]!r}")
    assert dumped.returncode == 0, dumped.stderr
    text = dumped.stdout.decode("utf-8", errors="replace")
    assert "multimodal_providercredential" in text and KEY[-4:] in text
    assert KEY not in text


# --- admin ------------------------------------------------------------------------------

ADMIN_URL = "/admin/multimodal/providercredential/"


def test_admin_sets_replaces_and_never_shows_the_key(admin_client_for, tenant_a, tenant_b,
                                                    settings):
    client = admin_client_for(tenant_a)
    add = client.get(f"{ADMIN_URL}add/")
    assert add.status_code == 200
    assert b'type="password"' in add.content

    # A failed submit (bad base_url) renders the form again without the key in it.
    failed = client.post(f"{ADMIN_URL}add/", {
        "tenant": tenant_a.pk, "provider": "openai", "api_key": KEY,
        "base_url": "https://user:pw@example.com", "default_model": ""})
    assert failed.status_code == 200
    assert b"must not contain credentials" in failed.content
    assert KEY.encode() not in failed.content

    # Staff may set base_url (tenants may not), into a private network only when the operator
    # allows that network.
    refused = client.post(f"{ADMIN_URL}add/", {
        "tenant": tenant_a.pk, "provider": "openai", "api_key": KEY,
        "base_url": "http://10.0.0.5:8000/v1", "default_model": "gpt-4o-mini"})
    assert refused.status_code == 200
    assert b"is a private address" in refused.content
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = "10.0.0.0/24"
    created = client.post(f"{ADMIN_URL}add/", {
        "tenant": tenant_a.pk, "provider": "openai", "api_key": KEY,
        "base_url": "http://10.0.0.5:8000/v1", "default_model": "gpt-4o-mini"})
    assert created.status_code == 302, created.content[:2000]
    credential = stored(tenant_a, "openai")
    assert credential.api_key() == KEY and credential.base_url == "http://10.0.0.5:8000/v1"
    assert credential.updated_by.startswith("user:")

    listing = client.get(ADMIN_URL)
    assert listing.status_code == 200
    assert f"…{KEY[-4:]}".encode() in listing.content
    assert KEY.encode() not in listing.content

    change_url = f"{ADMIN_URL}{credential.pk}/change/"
    page = client.get(change_url)
    assert page.status_code == 200 and KEY.encode() not in page.content
    assert credential.api_key_encrypted.encode() not in page.content

    # Blank key: the stored one is kept; other fields change.
    kept = client.post(change_url, {"api_key": "", "base_url": "", "default_model": "m1"})
    assert kept.status_code == 302
    credential.refresh_from_db()
    assert credential.api_key() == KEY and credential.default_model == "m1"
    assert credential.base_url == ""

    replaced = client.post(change_url, {"api_key": OTHER_KEY, "base_url": "",
                                        "default_model": "m1"})
    assert replaced.status_code == 302
    credential.refresh_from_db()
    assert credential.api_key() == OTHER_KEY and credential.key_last4 == OTHER_KEY[-4:]

    history = client.get(f"{change_url.removesuffix('change/')}history/")
    assert history.status_code == 200
    assert KEY.encode() not in history.content and OTHER_KEY.encode() not in history.content

    # The add form requires a key; another tenant is not offered to this staff member.
    no_key = client.post(f"{ADMIN_URL}add/", {"tenant": tenant_a.pk, "provider": "elevenlabs",
                                               "api_key": "", "base_url": "",
                                               "default_model": ""})
    assert b"An API key is required" in no_key.content
    foreign = client.post(f"{ADMIN_URL}add/", {"tenant": tenant_b.pk, "provider": "openai",
                                               "api_key": KEY, "base_url": "",
                                               "default_model": ""})
    assert foreign.status_code == 200
    assert not ProviderCredential.all_tenants.filter(tenant=tenant_b).exists()


def test_admin_shows_only_granted_tenants_credentials(admin_client_for, tenant_a, tenant_b):
    make_credential(tenant_a, key=KEY)
    other = make_credential(tenant_b, key=OTHER_KEY)
    client = admin_client_for(tenant_a)
    listing = client.get(ADMIN_URL)
    assert KEY[-4:].encode() in listing.content
    assert OTHER_KEY[-4:].encode() not in listing.content
    assert client.get(f"{ADMIN_URL}{other.pk}/change/").status_code in (302, 404)


def test_admin_explains_missing_secret_keys(admin_client_for, tenant_a, settings):
    settings.AGENT33_SECRET_KEYS = []
    settings.DEBUG = False
    client = admin_client_for(tenant_a)
    page = client.post(f"{ADMIN_URL}add/", {"tenant": tenant_a.pk, "provider": "openai",
                                            "api_key": KEY, "base_url": "",
                                            "default_model": ""})
    assert page.status_code == 200
    assert b"AGENT33_SECRET_KEYS" in page.content and KEY.encode() not in page.content
    assert not ProviderCredential.all_tenants.exists()


@pytest.mark.parametrize("path", ["bad%00tenant/providers", "tenant-a/providers/open%00ai",
                                  "bad%00tenant/providers/openai"])
def test_odd_paths_are_404_not_500(operator_client, client_a, tenant_a, path):
    for client in (operator_client, client_a):
        for method in ("get", "put", "delete"):
            if method == "get" and not path.endswith("providers"):
                continue
            response = getattr(client, method)(f"{BASE}/{path}", {"api_key": KEY},
                                               format="json")
            assert response.status_code in (404, 405), (method, path, response.content)
    # The policy route shares the tenant lookup.
    if path.startswith("bad%00tenant/providers"):
        policy = operator_client.get(f"{BASE}/bad%00tenant/policy")
        assert policy.status_code == 404


@pytest.mark.parametrize("base_url", [
    "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://169.254.169.254/latest",
    "https://10.20.30.40/v1", "http://[::1]:9000/v1", "http://[fd00::5]/v1",
    "http://0.0.0.0/v1", "http://[::ffff:192.168.1.1]/v1",
])
def test_base_url_into_this_machine_or_a_private_network_is_refused(
    operator_client, client_a, tenant_a, settings, base_url
):
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = ""
    assert put(client_a, tenant_a, "openai-compatible", api_key=KEY).status_code == 200
    response = put(operator_client, tenant_a, "openai-compatible", base_url=base_url)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "base_url_not_allowed"
    assert "AGENT33_PROVIDER_PRIVATE_NETWORKS" in body["detail"]
    assert stored(tenant_a, "openai-compatible").base_url == ""


def test_an_allowed_private_network_may_be_used(operator_client, client_a, tenant_a, settings):
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = "10.20.0.0/16, fd00::/8"
    assert put(client_a, tenant_a, "openai-compatible", api_key=KEY).status_code == 200
    for allowed in ("https://10.20.30.40/v1", "http://[fd00::5]/v1"):
        response = put(operator_client, tenant_a, "openai-compatible", base_url=allowed)
        assert response.status_code == 200, response.content
    response = put(operator_client, tenant_a, "openai-compatible",
                   base_url="https://10.21.0.1/v1")  # outside the allowed network
    assert response.json()["code"] == "base_url_not_allowed"


def test_a_malformed_private_networks_setting_fails_the_start_up_check(settings):
    from multimodal.encryption import check_private_networks

    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = "10.0.0.0/8,not-a-network"
    [error] = check_private_networks()
    assert error.id == "multimodal.E002" and "'not-a-network'" in error.msg
