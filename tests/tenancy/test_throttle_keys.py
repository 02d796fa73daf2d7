"""Throttle keys never come from headers the client writes, and counters live where a flood
cannot evict them (issue 24): without AGENT33_TRUSTED_PROXIES, X-Forwarded-For is ignored;
with it, only the part the trusted proxies wrote is read."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.test import RequestFactory

from agent33.auth.proxies import check_trusted_proxies, client_address
from agent33.auth.throttling import TokenRateThrottle
from agent33.tenancy.models import RateCounter
from tests.conftest import make_client

pytestmark = pytest.mark.django_db

REDIS_DB = "redis://127.0.0.1:6379/9"
PUBLIC = "/v1/test/public"


@pytest.fixture
def rate(monkeypatch):
    """5 requests a minute (the clock is held 30 s into one: tests/conftest.py)."""
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "5/min"})


@pytest.fixture(params=["database", "redis"])
def store(request, settings):
    """Where the counts live: the database (no REDIS_URL), or Redis."""
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        prefix = f"keys-test-{uuid.uuid4().hex}"
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": REDIS_DB, "KEY_PREFIX": prefix}}
        server = redis.Redis.from_url(REDIS_DB)
        yield lambda: sorted(key.decode() for key in server.keys(f"{prefix}:*counter:*"))
        return
    yield lambda: sorted(RateCounter.objects.values_list("key", flat=True))


@pytest.mark.urls("tests.tenancy.error_urls")
def test_fresh_forwarded_for_values_share_one_counter_and_evict_no_tenants(client_a, rate,
                                                                            store):
    for _ in range(5):
        assert client_a.get("/v1/auth/whoami").status_code == 200
    assert client_a.get("/v1/auth/whoami").status_code == 429

    anonymous = make_client()
    statuses = [
        anonymous.get(PUBLIC, HTTP_X_FORWARDED_FOR=f"198.51.{n // 256}.{n % 256}").status_code
        for n in range(900)
    ]
    # One client address (the connection's), one counter: its 5, then refusals.
    assert statuses[:5] == [200] * 5
    assert set(statuses[5:]) == {429}
    assert len(store()) == 2, store()  # the token's and the address's, nothing per header

    # The tenant's counter is still there: the token is still over its rate.
    refused = client_a.get("/v1/auth/whoami")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 30


@pytest.mark.urls("tests.tenancy.error_urls")
def test_behind_a_trusted_proxy_each_client_has_its_own_counter(settings, rate, store):
    settings.AGENT33_TRUSTED_PROXIES = "127.0.0.0/8"  # the test client's REMOTE_ADDR
    anonymous = make_client()
    first = [anonymous.get(PUBLIC, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code
             for _ in range(6)]
    assert first == [200] * 5 + [429]
    # A client cannot escape by writing addresses in front of what the proxy appended.
    spoofed = anonymous.get(PUBLIC, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7")
    assert spoofed.status_code == 429
    assert anonymous.get(PUBLIC, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200
    assert len(store()) == 2


def request_from(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(("trusted", "remote", "forwarded", "client"), [
    ("", "192.0.2.1", "203.0.113.7", "192.0.2.1"),  # no setting: the header is ignored
    ("10.0.0.0/8", "192.0.2.1", "203.0.113.7", "192.0.2.1"),  # not from a trusted proxy
    ("10.0.0.0/8", "10.0.0.5", "203.0.113.7", "203.0.113.7"),
    ("10.0.0.0/8", "10.0.0.5", "1.1.1.1, 203.0.113.7", "203.0.113.7"),  # the rightmost
    ("10.0.0.0/8", "10.0.0.5", "1.1.1.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),  # 2 hops
    ("10.0.0.0/8", "10.0.0.5", "10.1.1.1, 10.0.0.9", "10.1.1.1"),  # all trusted
    ("10.0.0.0/8", "10.0.0.5", "203.0.113.7, not-an-ip", "10.0.0.5"),  # stop at garbage
    ("10.0.0.0/8", "10.0.0.5", None, "10.0.0.5"),
    ("10.0.0.0/8", "10.0.0.5", "", "10.0.0.5"),
    ("fd00::/8", "fd00::1", "2001:db8::7", "2001:db8::7"),
])
def test_the_client_address(settings, trusted, remote, forwarded, client):
    settings.AGENT33_TRUSTED_PROXIES = trusted
    assert client_address(request_from(remote, forwarded)) == client


def test_a_malformed_trusted_proxy_setting_fails_the_start_up_check(settings):
    settings.AGENT33_TRUSTED_PROXIES = "10.0.0.0/8, proxy.internal"
    [error] = check_trusted_proxies()
    assert error.id == "agent33.E002" and "proxy.internal" in error.msg
    # Until fixed, no header is believed.
    assert client_address(request_from("10.0.0.5", "203.0.113.7")) == "10.0.0.5"
    settings.AGENT33_TRUSTED_PROXIES = "10.0.0.0/8"
    assert check_trusted_proxies() == []


def test_the_staff_login_lock_out_keys_on_the_same_address(settings):
    from axes.helpers import get_client_ip_address

    assert get_client_ip_address(request_from("192.0.2.1", "203.0.113.7")) == "192.0.2.1"
    settings.AGENT33_TRUSTED_PROXIES = "192.0.2.0/24"
    assert get_client_ip_address(request_from("192.0.2.1", "203.0.113.7")) == "203.0.113.7"
