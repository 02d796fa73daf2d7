"""Waiting for something another process does, without spending CPU on it.

PostgreSQL: `notify(channel)` sends a NOTIFY that is delivered when the sender's transaction
commits, and `wait_until(...)` LISTENs and sleeps in the kernel until one arrives (checking
the condition again at least every `recheck` seconds, for changes that send no
notification). SQLite and other databases: the condition is polled, with sleeps that grow
from 50 ms to 500 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

__all__ = ["notify", "wait_until"]

T = TypeVar("T")

_POLL_FIRST, _POLL_MAX = 0.05, 0.5


def _channel(name: str) -> str:
    return f"agent33:{name}"[:63]


def notify(channel: str) -> None:
    """Tell waiters on `channel` to look again (on commit of the current transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [_channel(channel)])


def wait_until[T](check: Callable[[], T | None], *, channel: str, timeout: float,
               recheck: float = 1.0) -> T | None:
    """`check()` until it returns something other than None or `timeout` seconds pass;
    returns its last answer. Call it outside a transaction (a NOTIFY is only seen by a
    connection that is not inside one)."""
    deadline = time.monotonic() + timeout
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return _poll(check, deadline)
    quoted = connection.ops.quote_name(_channel(channel))
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute(f"LISTEN {quoted}")
    try:
        while True:
            # After LISTEN: a notification sent after this check is not missed.
            found = check()
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            for _ in raw.notifies(timeout=min(recheck, remaining), stop_after=1):
                pass
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"UNLISTEN {quoted}")


def _poll[T](check: Callable[[], T | None], deadline: float) -> T | None:
    pause = _POLL_FIRST
    while True:
        found = check()
        remaining = deadline - time.monotonic()
        if found is not None or remaining <= 0:
            return found
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, _POLL_MAX)
