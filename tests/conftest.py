"""Shared fixtures: tenants, API clients with tokens, and service availability guards.

Tests that need PostgreSQL, Redis or chromium skip with a reason when the service is missing;
with AGENT33_REQUIRE_SERVICES=1 (CI) a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest
from django.db import connection
from rest_framework.test import APIClient

from agent33.auth.scopes import ADMIN, ALL_SCOPES
from agent33.tenancy.services import token_issue
from tests.factories.tenancy import TenantFactory

REQUIRE_SERVICES = os.environ.get("AGENT33_REQUIRE_SERVICES") == "1"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def service_missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (AGENT33_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def redis_available() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def require_postgres(db):
    """For locking and race tests: they run in the PostgreSQL pass of the suite."""
    if connection.vendor != "postgresql":
        pytest.skip("runs on PostgreSQL only (DATABASE_URL=postgres://...); CI's PG pass runs it")


@pytest.fixture
def require_redis():
    if not redis_available():
        service_missing(f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT}")


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        service_missing("Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def tenant_a(db):
    return TenantFactory(slug="tenant-a", name="Tenant A")


@pytest.fixture
def tenant_b(db):
    return TenantFactory(slug="tenant-b", name="Tenant B")


def make_client(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_client_for(db):
    """api_client_for(tenant_or_None, scopes=[...]) → an APIClient carrying a fresh token."""

    def build(tenant, scopes=(ADMIN,), **kwargs) -> APIClient:
        issued = token_issue(tenant=tenant, scopes=list(scopes), **kwargs)
        client = make_client(issued.plaintext)
        client.token = issued.token
        client.plaintext = issued.plaintext
        return client

    return build


@pytest.fixture
def client_a(api_client_for, tenant_a):
    return api_client_for(tenant_a)


@pytest.fixture
def client_b(api_client_for, tenant_b):
    return api_client_for(tenant_b)


@pytest.fixture
def operator_client(api_client_for):
    return api_client_for(None)


@pytest.fixture
def anonymous_client():
    return APIClient()


def scopes_without(required: str) -> list[str]:
    """Every scope except the required one and those that imply it."""
    family = required.split(":")[0]
    return [s for s in ALL_SCOPES if s not in (required, ADMIN) and s != f"{family}:*"]
