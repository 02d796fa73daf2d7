"""Fixtures for the multimodal tests: an isolated MEDIA_ROOT and small input files."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.factories.multimodal import png_bytes, wav_bytes


@pytest.fixture
def media_root(settings) -> Path:
    """This test's artifact folder (tests/conftest.py points MEDIA_ROOT at a fresh one)."""
    return Path(settings.MEDIA_ROOT)


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 standing in for a cloud provider. Threaded, so a handler
    that deliberately hangs does not stall the server for others."""
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


@pytest.fixture
def wav():
    return wav_bytes()


@pytest.fixture
def png():
    return png_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


REQUESTS = "/v1/multimodal/requests"
CLOUD_KEY = "sk-tenant-PLAINTEXT-5e6f7a8b9c0d1e2f3a4b"


def keys_url(tenant, provider: str) -> str:
    return f"/v1/multimodal/tenants/{tenant.slug}/providers/{provider}"


@pytest.fixture
def cloud(server: HTTPServer) -> Iterator[HTTPServer]:
    """The loopback cloud provider, empty before and after the test."""
    server.clear()
    yield server
    server.clear()


@pytest.fixture
def configure(client_a, operator_client, tenant_a, cloud):
    """The split the contract intends: the tenant admin stores its key, an operator token
    aims the provider at the (loopback) endpoint."""

    def setup(provider: str, *, path: str = "/v1", key: str = CLOUD_KEY, **extra) -> None:
        stored = client_a.put(keys_url(tenant_a, provider), {"api_key": key, **extra},
                              format="json")
        assert stored.status_code == 200, stored.content
        aimed = operator_client.put(keys_url(tenant_a, provider),
                                    {"base_url": cloud.url_for(path)}, format="json")
        assert aimed.status_code == 200, aimed.content

    return setup


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Create (execute_now) and let the eager task run; return (request, result) as a
    polling client would read them."""

    def create_and_run(client, **body) -> tuple[dict, dict]:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(REQUESTS, body, format="json")
        assert response.status_code == 201, response.content
        request_id = response.json()["id"]
        mm_request = client.get(f"{REQUESTS}/{request_id}").json()
        result = client.get(f"{REQUESTS}/{request_id}/result")
        return mm_request, result.json() if result.status_code == 200 else {}

    return create_and_run


@pytest.fixture
def prices(db):
    """The price table as the data migration seeds it (tests build their database without
    migrations), returned as {(provider, model): usd_per_unit}."""
    import importlib

    from django.apps import apps

    seeding = importlib.import_module("multimodal.migrations.0007_seed_prices")
    seeding.seed(apps, None)
    return seeding.PRICES


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Staff logins in the admin tests: a million PBKDF2 rounds per login buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# A fixed Fernet key for stored provider keys (tests that need rotation set their own), and
# no platform cloud keys from the developer's environment: without this, an exported
# OPENAI_API_KEY would turn every offline-engine test into a call to OpenAI.
TEST_SECRET_KEY = "mI1Kq3m2V2ueoGQf0GQmIjgXW2yh4pcyNgMjYr3m8V8="


@pytest.fixture(autouse=True)
def provider_settings(settings):
    settings.AGENT33_SECRET_KEYS = [TEST_SECRET_KEY]
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY",
                 "ELEVENLABS_BASE_URL", "OPENAI_COMPATIBLE_API_KEY",
                 "OPENAI_COMPATIBLE_BASE_URL"):
        setattr(settings, name, "")
    settings.MULTIMODAL_DEFAULT_PROVIDERS = {}
    return settings
