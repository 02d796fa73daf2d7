"""The live hub stream (DESIGN §8.4): server-sent events of every process change in the
caller's scope, from the change log (operations.changelog).

One `Broker` per server process listens for commits and fans each change out to the
process's subscribers (open streams), so a change costs one read per server process
however many streams are open, and an idle stream costs no query at all:
- PostgreSQL: `LISTEN agent33_hub` on one connection of the broker's thread; the log's
  commit trigger NOTIFYs the row id, delivered at commit (never for a rollback);
- Redis (`REDIS_URL`, scaled out): a subscription to the channel the writers publish the row
  ids on after commit;
- SQLite: the broker polls the log every `AGENT33_HUB_STREAM_POLL_SECONDS` while at least
  one stream is open (one query per poll per process).

A notification is only a wake-up: the broker reads the log rows after the last `seq` it
delivered. `seq` is given at commit in commit order, so "after the last one" never skips a
change that committed late. It then reads each changed process once (one query per type)
and hands the encoded event to every subscriber whose scope and filters match.

A stream starts with a catch-up from the log when the client sends `Last-Event-ID` (or
`?last_event_id=`): at most `CATCH_UP_LIMIT` events of the last `AGENT33_HUB_STREAM_KEEP_SECONDS`;
beyond that (or for an id the log no longer holds) an event `reset` tells it to reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min, Q
from django.utils import timezone

from agent33.errors import DomainError, InvalidInput
from agent33.tenancy.context import ALL_TENANTS, TenantSet

from .changelog import CHANNEL, redis_url
from .hub import registered_sources, sources_for_includes
from .models import ProcessEvent
from .selectors import HubQuery

logger = logging.getLogger("agent33.operations")

__all__ = [
    "CATCH_UP_LIMIT",
    "EventStreamRenderer",
    "StreamFull",
    "broker",
    "open_stream",
    "parse_last_event_id",
    "parse_stream_seconds",
    "redis_client",
    "stream_response",
]

CATCH_UP_LIMIT = 1000
# A subscriber that falls this far behind (a client that does not read) is told to reset
# instead of buffering without bound.
QUEUE_LIMIT = 1000
# Log rows the broker reads at once.
READ_BATCH = 2000


class StreamFull(DomainError):
    """503: this server process already serves its limit of open streams (the page polls
    meanwhile and tries the stream again later)."""

    status_code = 503
    code = "stream_capacity"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "10"}


@dataclass(frozen=True)
class LiveEvent:
    seq: int
    tenant_id: str
    process_type: str
    state_before: str
    state_after: str
    payload: bytes  # the encoded SSE event


def _encode(seq: int, data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {seq}\nevent: process\ndata: {body}\n\n".encode()


def _reset(seq: int) -> bytes:
    return f"id: {seq}\nevent: reset\ndata: {{}}\n\n".encode()


def _rows_of(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The current hub JSON of every process these log rows name: one query per type.
    Sources offering `rows(ids)` read in one query; others are asked one by one."""
    by_type: dict[str, list[str]] = {}
    for event in events:
        by_type.setdefault(event["process_type"], []).append(event["process_id"])
    found: dict[str, dict[str, Any]] = {}
    sources = {source.type_name: source for source in registered_sources()}
    for type_name, ids in by_type.items():
        source = sources.get(type_name)
        if source is None:
            continue
        unique = list(dict.fromkeys(ids))
        batch = getattr(source, "rows", None)
        if batch is not None:
            for pk, row in batch(unique).items():
                found[pk] = row.as_dict()
            continue
        for pk in unique:
            detail = source.get(pk)
            if detail is not None:
                found[pk] = detail.row.as_dict()
    return found


_EVENT_FIELDS = ("seq", "tenant_id", "process_type", "process_id", "state_before",
                 "state_after")


def _live_events(events: list[dict[str, Any]]) -> list[LiveEvent]:
    rows = _rows_of(events)
    live = []
    for event in events:
        data = rows.get(event["process_id"])
        if data is None:  # the process is gone: nothing to show
            continue
        live.append(LiveEvent(
            seq=event["seq"], tenant_id=event["tenant_id"], process_type=event["process_type"],
            state_before=event["state_before"], state_after=event["state_after"],
            payload=_encode(event["seq"], data),
        ))
    return live


# --- subscribers ----------------------------------------------------------------------------


class Subscriber:
    """One open stream: its scope and filters, and the events waiting to be written."""

    def __init__(self, *, scope: Any, query: HubQuery, after: int = 0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.scope = scope
        self.types = (None if query.includes is None else
                      frozenset(s.type_name for s in sources_for_includes(set(query.includes))))
        self.status = query.status
        self.after = after  # the last seq this stream has written (or skipped as seen)
        self._pending: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._loop = loop
        self._wake = asyncio.Event() if loop is not None else None

    def matches(self, event: LiveEvent) -> bool:
        scope = self.scope
        if scope is not ALL_TENANTS:
            if isinstance(scope, TenantSet):
                if event.tenant_id not in scope:
                    return False
            elif event.tenant_id != scope.pk:
                return False
        if self.types is not None and event.process_type not in self.types:
            return False
        # A status filter also shows the move away from that status, so the client can drop
        # the row.
        return self.status is None or self.status in (event.state_before, event.state_after)

    def offer(self, events: list[LiveEvent]) -> None:
        """From the broker's thread: queue the matching events this stream has not had."""
        chosen = [e for e in events if e.seq > self.after and self.matches(e)]
        if not chosen:
            return
        with self._cond:
            if len(self._pending) + len(chosen) > QUEUE_LIMIT:
                # The client does not keep up: it reloads instead of the server buffering.
                self._pending.clear()
                self._pending.append(_reset(chosen[-1].seq))
            else:
                self._pending.extend(e.payload for e in chosen)
            self.after = chosen[-1].seq
            self._cond.notify()
        if self._loop is not None:
            # A closed loop: the stream is going away.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> list[bytes]:
        with self._cond:
            taken = list(self._pending)
            self._pending.clear()
            return taken

    def wait(self, timeout: float) -> list[bytes]:
        """Blocking (a server thread): the next events, or [] after `timeout`."""
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
        return self._take()

    async def await_events(self, timeout: float) -> list[bytes]:
        """Async (ASGI): the next events, or [] after `timeout`; no thread held."""
        taken = self._take()
        if taken:
            return taken
        self._wake.clear()
        taken = self._take()  # one may have come between the two lines above
        if taken:
            return taken
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return []
        return self._take()


# --- the broker -------------------------------------------------------------------------------


class Broker:
    """This process's one listener; started with the first stream, never per stream."""

    def __init__(self, *, listen: bool = True) -> None:
        # listen=False: no thread (the test suite's default, inside test transactions that
        # never commit; tests of the fan-out make a listening one).
        self.listen = listen
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._last = 0  # the last seq read
        self._stale = True  # no subscribers since the last read: `_last` is out of date
        self.reads = 0  # log reads done (bench/hub_live.py reads it)
        self.sync_open = 0
        self.async_open = 0
        self._stopping = threading.Event()
        self._woken = threading.Event()

    # The mode is fixed per process by its settings (tests switch it with the settings).
    @staticmethod
    def mode() -> str:
        if redis_url() is not None:
            return "redis"
        return "postgresql" if connection.vendor == "postgresql" else "poll"

    def subscribe(self, subscriber: Subscriber, *, sync: bool) -> None:
        limit = (settings.AGENT33_HUB_STREAMS_THREADED if sync
                 else settings.AGENT33_HUB_STREAMS_MAX)
        with self._lock:
            open_now = self.sync_open if sync else self.async_open
            if open_now >= limit:
                raise StreamFull(
                    f"This server process already serves {open_now} hub streams (its limit); "
                    "poll GET /v1/operations/hub meanwhile, or retry later.")
            if self._stale:
                # Read before the caller's own catch-up, so the broker's start is never
                # after the stream's: nothing falls between the two.
                self._last = _max_seq()
                self._stale = False
            self._subscribers.add(subscriber)
            if sync:
                self.sync_open += 1
            else:
                self.async_open += 1
            if self.listen and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="hub-stream-broker",
                                                daemon=True)
                self._thread.start()

    def unsubscribe(self, subscriber: Subscriber, *, sync: bool) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.discard(subscriber)
                if sync:
                    self.sync_open -= 1
                else:
                    self.async_open -= 1

    def open_streams(self) -> int:
        with self._lock:
            return len(self._subscribers)

    # --- the thread -----------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (tests, between settings): it notices within a second."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop_until_stopped()
        finally:
            connection.close()

    def _loop_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                mode = self.mode()
                if mode == "redis":
                    self._run_redis()
                elif mode == "postgresql":
                    self._run_postgresql()
                else:
                    self._run_poll()
            except Exception:
                logger.warning("hub stream broker lost its connection; reconnecting",
                               exc_info=True)
                connection.close()
                self._stopping.wait(1.0)

    def _run_postgresql(self) -> None:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        raw = connection.connection
        self.deliver()  # whatever committed before LISTEN
        while not self._stopping.is_set():
            woke = False
            for _ in raw.notifies(timeout=1.0, stop_after=1):
                woke = True
            if woke:
                # Drain what else is queued, so a burst costs one read.
                for _ in raw.notifies(timeout=0):
                    pass
                self.deliver()

    def _run_redis(self) -> None:
        pubsub = redis_client(redis_url()).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANNEL)
        try:
            self.deliver()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                while pubsub.get_message(timeout=0) is not None:
                    pass
                self.deliver()
        finally:
            pubsub.close()

    def wake(self) -> None:
        """A change committed in this process (SQLite): read now rather than at the next
        poll. PostgreSQL and Redis need no such hint: they notify every process."""
        self._woken.set()

    def _run_poll(self) -> None:
        while not self._stopping.is_set():
            # Changes made in this process wake the broker at once; the poll finds those of
            # other processes (make run's worker).
            self._woken.wait(settings.AGENT33_HUB_STREAM_POLL_SECONDS)
            self._woken.clear()
            with self._lock:
                idle = not self._subscribers
            if idle:
                continue  # no stream open: no query
            self.deliver()

    def deliver(self) -> None:
        """Read what committed since the last read and hand it to the subscribers, in
        batches of READ_BATCH (a burst larger than one batch is read batch after batch)."""
        while self._deliver_batch() == READ_BATCH:
            pass

    def _deliver_batch(self) -> int:
        with self._lock:
            if not self._subscribers:
                self._stale = True  # nobody listens: no read; the next subscriber re-reads
                return 0
            after = self._last
        close_old_connections_if_broken()
        events = list(
            ProcessEvent.all_tenants.filter(seq__gt=after).order_by("seq")
            .values(*_EVENT_FIELDS)[:READ_BATCH]
        )
        self.reads += 1
        if not events:
            return 0
        from agent33.tenancy.context import all_tenants_scope

        with all_tenants_scope():
            live = _live_events(events)
        with self._lock:
            self._last = max(self._last, events[-1]["seq"])
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(live)
        return len(events)


def close_old_connections_if_broken() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _max_seq() -> int:
    return ProcessEvent.all_tenants.aggregate(top=Max("seq"))["top"] or 0


_broker = Broker()


def broker() -> Broker:
    return _broker


_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def redis_client(url: str):
    """One Redis client (a connection pool) per URL per process."""
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            import redis

            client = _redis_clients[url] = redis.Redis.from_url(url)
        return client


# --- one stream -------------------------------------------------------------------------------


def parse_last_event_id(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("Last-Event-ID must be an event id this stream sent (digits).",
                           field="last_event_id")
    return int(raw)


def _catch_up(query_scope_events, last_seen: int) -> tuple[list[bytes], int]:
    """Events after `last_seen` in the caller's scope (the default manager narrows to it),
    or a reset. Returns the encoded events and the seq the live part continues after."""
    now = timezone.now()
    window_start = now - timedelta(seconds=settings.AGENT33_HUB_STREAM_KEEP_SECONDS)
    top = _max_seq()
    if last_seen > top:
        return [_reset(top)], top  # an id from another database (or a restored one)
    bounds = ProcessEvent.all_tenants.filter(seq__gt=last_seen).aggregate(
        first=Min("seq"), first_at=Min("created_at"))
    oldest = ProcessEvent.all_tenants.aggregate(low=Min("seq"))["low"]
    # The log no longer holds everything after `last_seen` (pruned), or what it holds is
    # older than the window: the client cannot be brought up to date event by event.
    if (oldest is not None and last_seen < oldest - 1 and last_seen < top) or (
            bounds["first_at"] is not None and bounds["first_at"] < window_start):
        return [_reset(top)], top
    events = list(query_scope_events.filter(seq__gt=last_seen, seq__lte=top)
                  .order_by("seq").values(*_EVENT_FIELDS)[:CATCH_UP_LIMIT + 1])
    if len(events) > CATCH_UP_LIMIT:
        return [_reset(top)], top
    return [event.payload for event in _live_events(events)], top


@dataclass
class OpenStream:
    """What the view hands to the response: the first chunks and the subscriber."""

    subscriber: Subscriber
    first: list[bytes]
    sync: bool
    seconds: float

    def _opening(self) -> list[bytes]:
        retry = int(settings.AGENT33_HUB_STREAM_RETRY_MS)
        return [f"retry: {retry}\n: hub stream\n\n".encode(), *self.first]

    def iterate(self) -> Iterator[bytes]:
        """For a threaded server: one thread per open stream (bounded per process)."""
        keepalive = settings.AGENT33_HUB_STREAM_KEEPALIVE_SECONDS
        deadline = time.monotonic() + self.seconds
        try:
            yield from self._opening()
            while (remaining := deadline - time.monotonic()) > 0:
                chunks = self.subscriber.wait(min(keepalive, remaining))
                yield b"".join(chunks) if chunks else b": keep-alive\n\n"
        finally:
            _broker.unsubscribe(self.subscriber, sync=True)

    async def aiterate(self) -> AsyncIterator[bytes]:
        """For ASGI: no thread held while the stream waits."""
        keepalive = settings.AGENT33_HUB_STREAM_KEEPALIVE_SECONDS
        deadline = time.monotonic() + self.seconds
        try:
            for chunk in self._opening():
                yield chunk
            while (remaining := deadline - time.monotonic()) > 0:
                chunks = await self.subscriber.await_events(min(keepalive, remaining))
                yield b"".join(chunks) if chunks else b": keep-alive\n\n"
        finally:
            _broker.unsubscribe(self.subscriber, sync=False)


def open_stream(*, scope: Any, query: HubQuery, last_event_id: int | None, seconds: float,
                asgi: bool) -> OpenStream:
    """Subscribe (503 `stream_capacity` when this process serves its limit), then catch up
    from the log. Runs in the request, with the caller's tenant scope set."""
    loop = _event_loop_of_request() if asgi else None
    subscriber = Subscriber(scope=scope, query=query, loop=loop)
    sync = loop is None
    _broker.subscribe(subscriber, sync=sync)
    try:
        scoped = ProcessEvent.objects.all()
        if subscriber.types is not None:
            scoped = scoped.filter(process_type__in=sorted(subscriber.types))
        if query.status is not None:
            scoped = scoped.filter(Q(state_after=query.status) | Q(state_before=query.status))
        if last_event_id is None:
            first: list[bytes] = []
            start = _max_seq()
        else:
            first, start = _catch_up(scoped, last_event_id)
        # Live events continue after what the catch-up covered (the broker's read started
        # no later, so nothing falls between); what it queued meanwhile up to `start` was
        # in the catch-up already.
        with subscriber._cond:
            subscriber.after = max(subscriber.after, start)
            kept = [chunk for chunk in subscriber._pending if _seq_of(chunk) > start]
            subscriber._pending.clear()
            subscriber._pending.extend(kept)
    except BaseException:
        _broker.unsubscribe(subscriber, sync=sync)
        raise
    return OpenStream(subscriber=subscriber, first=first, sync=sync, seconds=seconds)


def _seq_of(chunk: bytes) -> int:
    head = chunk[4:chunk.index(b"\n")] if chunk.startswith(b"id: ") else b"0"
    return int(head)


def _event_loop_of_request() -> asyncio.AbstractEventLoop | None:
    """The ASGI server's loop: the sync view runs in asgiref's thread, which knows it."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    from asgiref.sync import SyncToAsync

    return getattr(SyncToAsync.threadlocal, "main_event_loop", None)


# --- the HTTP side ----------------------------------------------------------------------------


class EventStreamRenderer:
    """Lets DRF accept `Accept: text/event-stream`; errors (401, 403, 400) still go out as the
    shared JSON error body."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if renderer_context is not None and renderer_context.get("response") is not None:
            renderer_context["response"]["Content-Type"] = "application/json"
        return json.dumps(data, separators=(",", ":")).encode()


class _SyncContent:
    """The response's iterable on a threaded server; closed by the response even when it
    never started, so the stream's place is given back at once."""

    def __init__(self, stream: OpenStream) -> None:
        self._stream = stream
        self._iterator = stream.iterate()

    def __iter__(self):
        return self._iterator

    def close(self) -> None:
        self._iterator.close()
        _broker.unsubscribe(self._stream.subscriber, sync=True)


class _AsyncContent:
    """The same on an ASGI server: Django streams an async iterable without a thread."""

    def __init__(self, stream: OpenStream) -> None:
        self._stream = stream
        self._iterator = stream.aiterate()

    def __aiter__(self):
        return self._iterator

    def close(self) -> None:
        _broker.unsubscribe(self._stream.subscriber, sync=False)


def parse_stream_seconds(raw: str | None) -> float:
    """`?duration=`: seconds before the server ends the stream (0: the catch-up alone), at
    most AGENT33_HUB_STREAM_MAX_SECONDS (the default)."""
    most = settings.AGENT33_HUB_STREAM_MAX_SECONDS
    if raw is None or not raw.strip():
        return most
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= most or value != value:
        raise InvalidInput(f"duration must be a number of seconds from 0 to {most:g}.",
                           field="duration")
    return value


def stream_response(request, *, scope: Any, query: HubQuery):
    """The text/event-stream response of `request` (a Django request; the API view and the
    staff page both use it). `Last-Event-ID` (header, or `?last_event_id=` for clients
    that cannot set headers) asks for a catch-up."""
    from django.core.handlers.asgi import ASGIRequest
    from django.http import StreamingHttpResponse

    raw_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    last_event_id = parse_last_event_id(raw_id)
    seconds = parse_stream_seconds(request.GET.get("duration"))
    asgi = isinstance(request, ASGIRequest)
    stream = open_stream(scope=scope, query=query, last_event_id=last_event_id,
                         seconds=seconds, asgi=asgi)
    if not connection.in_atomic_block:
        # The stream needs the database no more (the broker reads for it): give the
        # connection back now, not when the stream ends an hour later (a pooled one goes
        # back to the pool), so open streams never hold connections.
        connection.close()
    content = _SyncContent(stream) if stream.sync else _AsyncContent(stream)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy must pass events on at once
    return response
