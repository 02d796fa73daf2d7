"""Rate counters shared by every process (agent33/auth/counters.py), in the database and in
Redis: a count that does not fit changes nothing, windows start afresh, concurrent takes
never pass the limit together, idle callers' rows are purged."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from agent33.auth import counters
from agent33.auth.throttling import _take_request
from agent33.tenancy.models import RateCounter
from tests.conftest import HELD_CLOCK

pytestmark = pytest.mark.django_db

REDIS_DB = "redis://127.0.0.1:6379/9"
NOW = HELD_CLOCK  # 30 s into a minute


@pytest.fixture(params=["database", "redis"])
def store(request, settings) -> str:
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        settings.CACHES = {"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_DB,
            "KEY_PREFIX": f"counters-test-{uuid.uuid4().hex}"}}
    return request.param


def minute(key: str = "caller", limit: int = 100, now: float = NOW) -> counters.Window:
    return counters.window(key, limit=limit, seconds=60, now=now)


def test_a_window_ends_on_the_minute_and_says_when():
    w = minute(now=NOW)
    assert (w.ends_at, w.retry_after) == (1_800_000_060, 30)
    assert minute(now=1_800_000_059.5).retry_after == 1


def test_a_count_that_does_not_fit_changes_nothing(store):
    w = minute()
    assert counters.take(w, 60)
    assert not counters.take(w, 41)  # 101 would not fit
    assert counters.used(w) == 60
    assert counters.take(w, 40)  # exactly the limit
    assert not counters.take(w, 1)
    assert counters.used(w) == 100
    assert not counters.take(minute("other"), 101)  # never more than the limit at once
    assert counters.used(minute("other")) == 0


def test_the_next_window_starts_afresh_and_the_last_one_is_gone(store):
    assert counters.take(minute(), 100)
    later = minute(now=NOW + 60)
    assert counters.used(later) == 0
    assert counters.take(later, 100)
    assert counters.used(minute()) in (0, 100)  # Redis keeps the old key until it expires
    if store == "database":
        assert RateCounter.objects.count() == 1  # one row per caller, reused


def test_give_back_returns_what_was_taken(store):
    w = minute()
    assert counters.take(w, 100)
    counters.give_back(w, 30)
    assert counters.used(w) == 70
    assert counters.take(w, 30)
    counters.give_back(minute("never-counted"), 5)
    assert counters.used(minute("never-counted")) == 0


def test_rows_of_callers_idle_for_an_hour_are_purged():
    counters.take(minute("old"), 1)
    counters.take(minute("recent", now=NOW + 3500), 1)
    assert counters.purge_stale(now=NOW + 3700) == 1
    assert list(RateCounter.objects.values_list("key", flat=True)) == ["recent"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_takes_never_pass_the_limit_together(require_postgres, store):
    """Sixteen processes' worth of takes of 1,000 against 10,000 at once: exactly ten fit,
    and none that fits is refused on the way (no add-then-refund)."""
    w = minute(key=f"race-{uuid.uuid4().hex}", limit=10_000)
    barrier = threading.Barrier(16)
    results: list[bool] = []

    def take() -> None:
        try:
            barrier.wait()
            results.append(counters.take(w, 1_000))
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 10
    assert counters.used(w) == 10_000


def test_a_throttle_lease_serves_requests_without_a_query(django_assert_num_queries):
    w = minute(key="throttle:token:token-1", limit=6_000)
    assert _take_request(w)  # takes a lease of 60 from the shared count
    assert counters.used(w) == 60
    with django_assert_num_queries(0):
        assert all(_take_request(w) for _ in range(59))
    assert _take_request(w)  # the next lease
    assert counters.used(w) == 120


def test_a_used_up_window_refuses_without_a_query(django_assert_num_queries):
    w = minute(key="throttle:token:token-2", limit=5)
    assert all(_take_request(w) for _ in range(5))  # under 100: request by request
    assert not _take_request(w)
    with django_assert_num_queries(0):
        assert not any(_take_request(w) for _ in range(100))
    assert _take_request(minute(key="throttle:token:token-2", limit=5, now=NOW + 60))
