"""Counters of what a caller used in a fixed window (a token's requests per minute, a
tenant's outcome events per minute), shared by every process of the deployment.

Where they live:
- Redis, when the default cache is Redis (`REDIS_URL`): one key per caller and window,
  changed by a Lua script, so the check and the count are one step on the server;
- otherwise the database (`RateCounter`, one row per caller): one conditional UPDATE (a
  caller's first count also makes its row; rows of callers idle for an hour are purged).
Never a process's memory: each gunicorn worker would grant the whole allowance again, and
a flood of new callers could evict a counter from a size-bounded local cache.

`take` counts `amount` only if it fits (`used + amount <= limit`) and otherwise changes
nothing, so a refused request never takes from the allowance, not even for a moment that
another sender could observe (add-then-refund could refuse a request that fits).
Windows are fixed (aligned to the Unix epoch): a caller may use its allowance at the end
of one window and again at the start of the next.

Counts are taken outside the caller's transaction: in a database, a count inside one would
hold the caller's counter row locked until that transaction ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest

from agent33.tenancy.models import RateCounter

__all__ = ["Window", "give_back", "in_redis", "purge_stale", "take", "used", "window"]

# Rows of callers whose window ended this long ago are removed by `purge_stale` (hourly).
_STALE_SECONDS = 3600


@dataclass(frozen=True)
class Window:
    key: str  # the caller: "throttle:token:ip-..." , "events:<tenant>"
    limit: int
    ends_at: int  # Unix seconds
    retry_after: int  # whole seconds from now to the window's end, at least 1


def window(key: str, *, limit: int, seconds: int, now: float | None = None) -> Window:
    """The caller's current window of `seconds`."""
    now = time.time() if now is None else now
    ends_at = (int(now // seconds) + 1) * seconds
    return Window(key=key, limit=limit, ends_at=ends_at,
                  retry_after=max(1, math.ceil(ends_at - now)))


def in_redis() -> bool:
    """Whether counts go to Redis (about 0.1 ms each) rather than the database."""
    return _redis() is not None


def take(w: Window, amount: int) -> bool:
    """Count `amount` if it fits in the window's limit; False (and nothing counted) if not."""
    if amount > w.limit:
        return False
    redis = _redis()
    if redis is not None:
        return redis.take(w, amount)
    return _db_take(w, amount)


def give_back(w: Window, amount: int) -> None:
    """Undo a `take` whose work did not happen (the events were not stored after all)."""
    redis = _redis()
    if redis is not None:
        redis.give_back(w, amount)
        return
    if connection.in_atomic_block and connection.needs_rollback:
        return  # taken in the transaction that is failing: its rollback undoes the take
    RateCounter.objects.filter(key=w.key, window_ends_at=w.ends_at).update(
        used=Greatest(F("used") - amount, Value(0)))


def used(w: Window) -> int:
    """How much of the window's limit is used."""
    redis = _redis()
    if redis is not None:
        return redis.used(w)
    found = RateCounter.objects.filter(key=w.key, window_ends_at=w.ends_at)
    return found.values_list("used", flat=True).first() or 0


# --- the database ------------------------------------------------------------------------


def _db_take(w: Window, amount: int) -> bool:
    for _ in range(2):  # a second round only if another process made the row meanwhile
        # One statement decides and counts: a row of an ended window starts afresh at
        # `amount`; in the current window (or a later one, if another host's clock is
        # ahead) `amount` is added only while it fits.
        counted = RateCounter.objects.filter(
            Q(window_ends_at__lt=w.ends_at)
            | Q(window_ends_at__gte=w.ends_at, used__lte=w.limit - amount),
            key=w.key,
        ).update(
            used=Case(When(window_ends_at__lt=w.ends_at, then=Value(amount)),
                      default=F("used") + amount),
            window_ends_at=Greatest(F("window_ends_at"), Value(w.ends_at)),
        )
        if counted:
            return True
        if RateCounter.objects.filter(key=w.key).exists():
            return False  # the window's limit is used up
        try:
            with transaction.atomic():
                RateCounter.objects.create(key=w.key, window_ends_at=w.ends_at, used=amount)
        except IntegrityError:
            continue
        return True
    return False


def purge_stale(*, now: float | None = None) -> int:
    """Remove the rows of callers whose last window ended over an hour ago (a caller that
    comes back starts a new row), so the table holds about the last hour's callers. Run
    hourly by the schedule; returns how many rows went."""
    now = time.time() if now is None else now
    deleted, _ = RateCounter.objects.filter(
        window_ends_at__lt=int(now) - _STALE_SECONDS).delete()
    return deleted


# --- Redis -------------------------------------------------------------------------------

# KEYS[1] the window's key; ARGV amount, limit, seconds to keep the key. Returns the new
# count, or -1 (nothing counted) when the amount does not fit.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if used + amount > tonumber(ARGV[2]) then return -1 end
used = redis.call('INCRBY', KEYS[1], amount)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return used
"""
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], ARGV[1]) end
"""


class _Redis:
    """The counters in the default cache's Redis, under its key prefix and version."""

    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        # Django's client for that cache (its connection pool and options); a private
        # attribute, stable since Django 4.0.
        self.client = cache._cache.get_client(write=True)
        self.take_script = self.client.register_script(_TAKE)
        self.give_back_script = self.client.register_script(_GIVE_BACK)

    def _key(self, w: Window) -> str:
        return self.cache.make_and_validate_key(f"counter:{w.key}:{w.ends_at}")

    def take(self, w: Window, amount: int) -> bool:
        # Kept a minute past the window's end, for clocks a little behind.
        keep = max(60, w.ends_at - int(time.time()) + 60)
        return self.take_script(keys=[self._key(w)], args=[amount, w.limit, keep]) >= 0

    def give_back(self, w: Window, amount: int) -> None:
        self.give_back_script(keys=[self._key(w)], args=[amount])

    def used(self, w: Window) -> int:
        return int(self.client.get(self._key(w)) or 0)


def _redis() -> _Redis | None:
    cache = caches["default"]  # one per thread (Django's cache handler)
    if not isinstance(cache, RedisCache):
        return None
    # Kept on the cache object, so it lives and goes with that thread's cache.
    counters = cache.__dict__.get("_agent33_counters")
    if counters is None:
        counters = cache.__dict__["_agent33_counters"] = _Redis(cache)
    return counters
