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

from agent33.auth.scopes import ADMIN, ALL_SCOPES, OPERATOR_ONLY_SCOPES
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


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_sessions_before_teardown(django_db_setup, django_db_blocker):
    """Subprocesses killed on purpose (crash tests) and server threads can leave a session on
    the test database for a moment; end them so the database can be dropped at the end."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _login_rate_limit_off(settings):
    """django-axes needs the request at authenticate(); the test client's login() gives none.
    The login rate-limit test turns it back on."""
    settings.AXES_ENABLED = False


@pytest.fixture(autouse=True)
def _no_platform_cloud_keys(settings):
    """A developer's exported OPENAI_API_KEY must never send test requests to the cloud."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL",
                 "OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_BASE_URL"):
        setattr(settings, name, "")


# The loopback HTTP servers that stand in for cloud providers live on this machine, which the
# server refuses to call unless the operator allows it (multimodal/network.py).
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


@pytest.fixture(autouse=True)
def _loopback_providers_allowed(settings):
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = LOOPBACK_NETWORKS


@pytest.fixture(autouse=True)
def _no_event_rate_limit(settings):
    """Tests of one tenant share a worker process's cache for minutes; the per-minute event
    allowance is off except in the tests of it (tests/outcomes/test_event_rate.py)."""
    settings.AGENT33_EVENTS_PER_MINUTE = 0


# 30 s into a minute (agent33/auth/counters.py counts in windows aligned to the epoch).
HELD_CLOCK = 1_800_000_030.0


@pytest.fixture(autouse=True)
def _rate_windows_held(monkeypatch):
    """Throttles and the events allowance count in fixed one-minute windows. A test that
    crossed into the next minute would see its throttle lease or allowance start afresh (an
    extra query, a count reset), so in-process their clock is held at HELD_CLOCK. Servers a
    test starts keep the real clock; those tests wait for a fresh minute instead
    (tests/workers.py)."""
    from types import SimpleNamespace

    from agent33.auth import counters

    monkeypatch.setattr(counters, "time", SimpleNamespace(time=lambda: HELD_CLOCK))


IMMEDIATE_JOBS = {"default": {"BACKEND": "agent33.jobs.backends.ImmediateBackend"}}
DATABASE_JOBS = {"default": {"BACKEND": "agent33.jobs.backends.DatabaseBackend"}}
CELERY_JOBS = {"default": {"BACKEND": "agent33.jobs.backends.CeleryBackend"}}


@pytest.fixture(autouse=True)
def _jobs_run_in_process(settings):
    """Test-only: a job runs in this process when the transaction that queued it commits,
    once, and its error propagates (agent33.jobs.backends.ImmediateBackend). Tests of the
    real modes use `database_jobs` (and a real `manage.py worker`) or a Celery worker.

    A multimodal create or execute then waits for nothing by default: its job either ran
    when the request committed, or (a test inside one transaction) never will. The tests of
    the wait set it."""
    settings.TASKS = IMMEDIATE_JOBS
    settings.AGENT33_MULTIMODAL_WAIT_SECONDS = 0


@pytest.fixture(autouse=True)
def _hub_log_numbered_in_test_transactions(request):
    """The live hub's log rows are numbered at COMMIT on PostgreSQL (a deferred trigger,
    operations/changelog.py); a test inside one transaction never commits, so there the
    trigger runs at each insert instead. Tests with real commits (transactional_db,
    live_server) keep the deferred trigger."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    if {"transactional_db", "live_server"} & set(names) or (
            marker is not None and marker.kwargs.get("transaction")):
        return
    if marker is None and "db" not in names:
        return
    request.getfixturevalue("db")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS operations_processevent_at_commit IMMEDIATE")


@pytest.fixture(autouse=True)
def _hub_stream_broker(request, monkeypatch):
    """Each test gets its own live-hub broker. Inside a test transaction (nothing commits)
    it has no listening thread: open streams get their catch-up and keep-alives. With a
    live server (browser tests: real commits) it listens, as in production; tests of the
    fan-out itself make their own (tests/operations/test_hub_stream.py)."""
    from operations import stream

    live = "live_server" in request.fixturenames
    broker = stream.Broker(listen=live)
    monkeypatch.setattr(stream, "_broker", broker)
    if live and connection.vendor == "sqlite":
        # The live server's in-memory SQLite is shared-cache: a read of the log while a
        # request writes it fails at once ("table is locked") instead of waiting. Changes
        # made in the server's process wake the broker anyway; it need not poll often.
        request.getfixturevalue("settings").AGENT33_HUB_STREAM_POLL_SECONDS = 5.0
    yield
    broker.stop()


@pytest.fixture
def database_jobs(settings):
    """Jobs go to the database queue, as in the embedded mode; nothing runs them until the
    test runs them (`run_ready_jobs()`) or starts a worker."""
    settings.TASKS = DATABASE_JOBS


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Artifacts written by a test land in its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    """Each test starts with no token remembered by the authenticator, and no throttle
    lease (token ids repeat between tests whose rows were rolled back)."""
    from agent33.auth.authentication import forget_cached_tokens
    from agent33.auth.throttling import forget_leases

    forget_cached_tokens()
    forget_leases()
    yield
    forget_cached_tokens()
    forget_leases()


@pytest.fixture
def require_postgres(db):
    """For locking and race tests: they run in the PostgreSQL pass of the suite."""
    if connection.vendor != "postgresql":
        pytest.skip("runs on PostgreSQL only (DATABASE_URL=postgres://...); CI's PG pass runs it")


@pytest.fixture
def scratch_database_url(tmp_path):
    """A fresh database of this pass's kind for processes a test starts: an SQLite file, or
    a scratch PostgreSQL database (dropped afterwards) in the PostgreSQL pass."""
    from bench.common import drop_postgres_database, fresh_postgres_database

    if connection.vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'scratch.sqlite3'}"
        return
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    admin_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    name = f"{db['NAME']}_scratch"[:63]
    yield fresh_postgres_database(name, admin_url)
    drop_postgres_database(name, admin_url)


@pytest.fixture
def require_redis():
    if not redis_available():
        service_missing(f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT}")


@pytest.fixture(params=["redis", "database"])
def counts_env(request) -> dict[str, str]:
    """The environment of a server a test starts, once with its rate counters in Redis (a
    key prefix of the test's own) and once without REDIS_URL (in the database)."""
    if request.param == "database":
        return {}
    request.getfixturevalue("require_redis")
    import uuid

    return {"REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/8",
            "CACHE_KEY_PREFIX": f"counts-test-{uuid.uuid4().hex}"}


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        service_missing("Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def refused_outcome_counts(monkeypatch):
    """Outcome events' count write replaced by a write the database refuses (NOT NULL): a
    real failure inside the transaction that records events, after the event rows and
    whatever the caller wrote with them."""
    from outcomes import services
    from outcomes.models import OutcomeCount

    def refused(tenant, counts):
        OutcomeCount.all_tenants.bulk_create(
            [OutcomeCount(tenant_id=None, metric_type="success_rate", domain="", event_type="")]
        )

    monkeypatch.setattr(services, "_counts_add", refused)


@pytest.fixture
def tenant_a(db):
    return TenantFactory(slug="tenant-a", name="Tenant A")


@pytest.fixture
def tenant_b(db):
    return TenantFactory(slug="tenant-b", name="Tenant B")


def warm_up(client: APIClient) -> None:
    """A query-count guard measures the view: one request first, so the token is remembered
    and its throttle counter exists (a caller's first request makes its counter row)."""
    assert client.get("/v1/auth/whoami").status_code == 200


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


def scopes_without(required: str, *, operator: bool = False) -> list[str]:
    """Every scope except the required one and those that imply it (and, for a tenant's
    token, the scopes only operators may hold)."""
    family = required.split(":")[0]
    return [s for s in ALL_SCOPES if s not in (required, ADMIN) and s != f"{family}:*"
            and (operator or s not in OPERATOR_ONLY_SCOPES)]


# --- Browser tests (Playwright driving Debian's chromium) -------------------------------

STAFF_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def browser(chromium_path, monkeypatch):
    """A headless Debian chromium driven by Playwright (its own browser download is not used)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # meanwhile are ordinary synchronous calls, so allow them explicitly (for this test only:
    # a leftover variable would fail later `check --deploy` runs).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def staff_user_factory(db):
    """staff_user_factory(username, tenants=[...], superuser=False) → a staff user whose
    password is STAFF_PASSWORD, granted the given tenants and every model permission."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from guardian.shortcuts import assign_perm

    from agent33.tenancy.staff import ACCESS_TENANT_PERM

    def build(username: str, tenants=(), superuser: bool = False):
        user = get_user_model().objects.create_user(
            username=username, password=STAFF_PASSWORD, is_staff=True, is_superuser=superuser
        )
        if not superuser:
            user.user_permissions.set(
                Permission.objects.filter(
                    content_type__app_label__in=["operations", "multimodal", "outcomes",
                                                 "webhooks"]
                )
            )
        for tenant in tenants:
            assign_perm(ACCESS_TENANT_PERM, user, tenant)
        return user

    return build


@pytest.fixture
def staff_page(browser, live_server):
    """staff_page(user, **context_options) → a logged-in Playwright page on the live
    server's admin (options go to browser.new_context, e.g. timezone_id)."""
    contexts = []

    def login(user, **options):
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.live_url = live_server.url
        return page

    yield login
    for context in contexts:
        context.close()
