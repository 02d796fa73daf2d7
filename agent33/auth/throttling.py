"""Per-token request throttling (`AGENT33_THROTTLE_RATE`), counted where every process of
the deployment sees the same count (agent33/auth/counters.py: Redis with `REDIS_URL`, the
database without). Requests without a token (the schema and docs pages) count per client
address (agent33/auth/proxies.py), never per a header the client writes.

With Redis every request is counted there (one script call). In the database, a write per
request would cost every API request a statement and a commit, so a process takes a lease
of 1 % of the limit at once and serves that many of the caller's requests from it before
counting again. Leases come out of the shared count, so all processes together never let
more than the limit through; a lease still unused in another process when the window ends
is lost, so a caller using its whole rate may be refused up to 1 % of the limit per process
early. Limits under 100 a window are counted request by request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rest_framework.throttling import SimpleRateThrottle

from . import counters
from .proxies import client_address

__all__ = ["TokenRateThrottle", "forget_leases"]

_LEASE_FRACTION = 100  # a lease is limit // 100 requests
_MAX_LEASES = 10_000  # callers remembered per process


@dataclass
class _Lease:
    """What this process may still let through of a caller's window without counting, or
    that the window is used up (a throttle's count only grows within its window, so a
    refused caller is refused here until the window ends, without a query)."""

    ends_at: int
    left: int
    used_up: bool = False


_leases: dict[str, _Lease] = {}
_leases_lock = threading.Lock()


def forget_leases() -> None:
    with _leases_lock:
        _leases.clear()


def _from_lease(window: counters.Window) -> bool | None:
    """True: let through from the lease; False: the window is used up; None: ask."""
    with _leases_lock:
        lease = _leases.get(window.key)
        if lease is None or lease.ends_at != window.ends_at:
            return None
        if lease.used_up:
            return False
        if lease.left <= 0:
            return None
        lease.left -= 1
        return True


def _remember(window: counters.Window, *, left: int, used_up: bool = False) -> None:
    with _leases_lock:
        if len(_leases) >= _MAX_LEASES:
            _leases.clear()
        _leases[window.key] = _Lease(ends_at=window.ends_at, left=left, used_up=used_up)


def _take_request(window: counters.Window) -> bool:
    if counters.in_redis():
        return counters.take(window, 1)
    leased = _from_lease(window)
    if leased is not None:
        return leased
    size = window.limit // _LEASE_FRACTION
    if size > 1 and counters.take(window, size):
        _remember(window, left=size - 1)
        return True
    if counters.take(window, 1):  # what is left of the window, one request at a time
        return True
    _remember(window, left=0, used_up=True)
    return False


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"
    window: counters.Window | None = None

    def get_cache_key(self, request, view) -> str:
        principal = request.user
        if principal is not None and getattr(principal, "token", None) is not None:
            ident = f"token-{principal.token.pk}"
        else:
            ident = f"ip-{client_address(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.window = counters.window(self.get_cache_key(request, view),
                                      limit=self.num_requests, seconds=self.duration)
        return _take_request(self.window)

    def wait(self) -> float | None:
        return None if self.window is None else self.window.retry_after
