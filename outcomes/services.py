"""Every write to outcome events. Other apps record events through these two functions,
never by writing the model."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from agent33.ids import new_id
from agent33.sql import Statement, execute_together, insert_statement
from agent33.tenancy.models import Tenant

from .declines import declines_evaluate
from .models import OutcomeCount, OutcomeEvent
from .validation import CleanEvent, EventInvalid, clean_event, clean_events

__all__ = ["event_record", "event_record_bulk", "event_writes", "outcome_counts_rebuild"]

logger = logging.getLogger("agent33.outcomes")

CountKey = tuple[str, str, str]  # (metric_type, domain, event_type)
TrendKey = tuple[str, str]  # (metric_type, domain)

_INSERT_BATCH = 2_000  # rows per INSERT where COPY is not used (SQLite, a few events)
_COPY_FROM = 100  # events per request from which PostgreSQL's COPY beats one INSERT
_UPSERT_BATCH = 500  # counts rows per upsert statement (SQLite's variable limit)


def event_record(
    *,
    tenant: Tenant,
    domain: str,
    event_type: str,
    metric_type: str,
    value: float,
    occurred_at: datetime | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    watch_declines: bool = True,
) -> OutcomeEvent:
    """Record one event. Bad input raises ValidationError naming the field.

    `watch_declines=False` is for events that record a fact rather than measure how well
    something performs (an operator's control, always a success): they show on the
    dashboard but do not trigger decline detection, which would only re-read a flat trend.
    """
    event = _new_event(tenant, domain, event_type, metric_type, value, occurred_at, metadata)
    # Joins a caller's transaction whole (no savepoint round trips): an event recorded with
    # the fact it describes (a request's ending) commits or rolls back with it.
    with transaction.atomic(savepoint=False):
        execute_together(connection, _event_statements(event))
        if watch_declines:
            _notify_on_commit(tenant, {(event.metric_type, event.domain)})
    event._state.adding = False  # stored, as if saved
    return event


def event_writes(
    *,
    tenant: Tenant,
    domain: str,
    event_type: str,
    metric_type: str,
    value: float,
    occurred_at: datetime | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    watch_declines: bool = True,
) -> tuple[OutcomeEvent, list[Statement]]:
    """event_record for a caller that writes the event in its own statement: validates
    (ValidationError before anything is written) and returns the event and the statements
    that store it and its count, for `agent33.sql.execute_together` in the caller's
    transaction. A control uses it so that its state change, audit row and event are one
    statement on PostgreSQL. Call it inside that transaction: the decline check is
    registered to run when it commits."""
    event = _new_event(tenant, domain, event_type, metric_type, value, occurred_at, metadata)
    if connection.get_autocommit():
        raise TransactionManagementError("event_writes must run inside the caller's transaction.")
    if watch_declines:
        _notify_on_commit(tenant, {(event.metric_type, event.domain)})
    return event, _event_statements(event)


def _new_event(
    tenant: Tenant,
    domain: str,
    event_type: str,
    metric_type: str,
    value: float,
    occurred_at: datetime | str | None,
    metadata: Mapping[str, Any] | None,
) -> OutcomeEvent:
    """A validated, unsaved event; ValidationError naming the field otherwise."""
    try:
        clean = clean_event(
            {
                "domain": domain,
                "event_type": event_type,
                "metric_type": metric_type,
                "value": value,
                "occurred_at": occurred_at,
                "metadata": metadata,
            }
        )
    except EventInvalid as exc:
        raise ValidationError(exc.errors) from None
    now = timezone.now()
    return OutcomeEvent(
        tenant_id=tenant.pk,
        domain=clean.domain,
        event_type=clean.event_type,
        metric_type=clean.metric_type,
        value=clean.value,
        occurred_at=clean.occurred_at or now,
        metadata=clean.metadata,
        created_at=now,
    )


def _event_statements(event: OutcomeEvent) -> list[Statement]:
    """The event's INSERT and its count's upsert: one statement on PostgreSQL (agent33.sql),
    as every control and every multimodal request records events on its latency path."""
    count_key = (event.metric_type, event.domain, event.event_type)
    return [
        insert_statement(event, connection),
        *_counts_statements(event.tenant_id, {count_key: 1}),
    ]


def event_record_bulk(*, tenant: Tenant, events: Sequence[Mapping[str, Any]]) -> int:
    """Record up to 10,000 events, all or nothing; returns how many were stored.

    The first bad event raises ValidationError with fields `events.<index>.<field>`, and
    nothing is stored. On PostgreSQL the rows go in with COPY, elsewhere with multi-row
    INSERTs, inside one transaction together with the summary counts.
    """
    cleaned = clean_events(events)
    now = timezone.now()
    tenant_id = tenant.pk
    counts: Counter[CountKey] = Counter(
        (e.metric_type, e.domain, e.event_type) for e in cleaned
    )
    with transaction.atomic(savepoint=False):  # as in event_record
        if connection.vendor == "postgresql" and len(cleaned) >= _COPY_FROM:
            _copy_events(tenant_id, cleaned, now)
            execute_together(connection, _counts_statements(tenant_id, counts))
        else:
            # A few events (a multimodal request's ending records two) go in with the
            # counts as one statement on PostgreSQL; SQLite runs the same statements in turn.
            execute_together(
                connection,
                [*_insert_statements(tenant_id, cleaned, now),
                 *_counts_statements(tenant_id, counts)],
            )
        _notify_on_commit(tenant, {(metric, domain) for metric, domain, _ in counts})
    return len(cleaned)


def _ordered_ids(count: int) -> list[str]:
    """Fresh random ids, sorted: events of one request that share an occurred_at (say,
    none was given) then keep their submission order, since ties sort by id."""
    return sorted(new_id("outcome") for _ in range(count))


def _copy_events(tenant_id: str, cleaned: list[CleanEvent], now: datetime) -> None:
    meta = OutcomeEvent._meta
    quote = connection.ops.quote_name
    fields = ("id", "tenant", "domain", "event_type", "metric_type", "value", "occurred_at",
              "metadata", "created_at")
    columns = ", ".join(quote(meta.get_field(name).column) for name in fields)
    sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        write_row = copy.write_row
        for pk, event in zip(_ordered_ids(len(cleaned)), cleaned, strict=True):
            write_row(
                (
                    pk,
                    tenant_id,
                    event.domain,
                    event.event_type,
                    event.metric_type,
                    event.value,
                    event.occurred_at or now,
                    event.metadata_json,
                    now,
                )
            )


def _insert_statements(
    tenant_id: str, cleaned: list[CleanEvent], now: datetime
) -> list[Statement]:
    events = [
        OutcomeEvent(
            id=pk,
            tenant_id=tenant_id,
            domain=event.domain,
            event_type=event.event_type,
            metric_type=event.metric_type,
            value=event.value,
            occurred_at=event.occurred_at or now,
            metadata=event.metadata,
            created_at=now,
        )
        for pk, event in zip(_ordered_ids(len(cleaned)), cleaned, strict=True)
    ]
    return [
        insert_statement(events[start : start + _INSERT_BATCH], connection)
        for start in range(0, len(events), _INSERT_BATCH)
    ]


def _counts_statements(tenant_id: str, counts: Mapping[CountKey, int]) -> list[Statement]:
    """Upserts adding to the per-key counts, one per 500 keys. Keys go in sorted order so
    two concurrent requests lock the same count rows in the same order (no deadlock)."""
    table = connection.ops.quote_name(OutcomeCount._meta.db_table)
    count_col = connection.ops.quote_name("count")
    items = sorted(counts.items())
    # Only quoted identifiers are interpolated; every value is a parameter.
    head = f"INSERT INTO {table} (tenant_id, metric_type, domain, event_type, {count_col}) VALUES "  # noqa: S608
    tail = (
        " ON CONFLICT (tenant_id, metric_type, domain, event_type) "
        f"DO UPDATE SET {count_col} = {table}.{count_col} + EXCLUDED.{count_col}"
    )
    statements = []
    for start in range(0, len(items), _UPSERT_BATCH):
        chunk = items[start : start + _UPSERT_BATCH]
        params: list[Any] = []
        for (metric_type, domain, event_type), count in chunk:
            params += [tenant_id, metric_type, domain, event_type, count]
        rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
        statements.append((head + rows + tail, params))
    return statements


def _notify_on_commit(tenant: Tenant, keys: set[TrendKey]) -> None:
    transaction.on_commit(lambda: _after_events_committed(tenant, frozenset(keys)))


def _after_events_committed(tenant: Tenant, keys: frozenset[TrendKey]) -> None:
    """Once per request, after commit: evaluate the touched trends for declines, on a worker
    (a Celery task) when there is a broker. A failure there never undoes or fails the
    recorded events."""
    from .tasks import evaluate_declines

    try:
        if current_app.conf.task_always_eager:
            # No broker, so no worker: evaluate right here with the tenant already in hand,
            # rather than through Celery's eager tracing and a reload of the tenant row.
            declines_evaluate(tenant=tenant, keys=keys)
        else:
            evaluate_declines.delay(tenant.pk, [list(key) for key in sorted(keys)])
    except Exception:  # a broker outage must not turn a stored event into an error
        logger.exception("Could not evaluate declines for %s", tenant.pk)


def outcome_counts_rebuild(*, tenant: Tenant | None = None) -> int:
    """Recompute the summary counts from the events (after a raw load or a repair).
    Returns the number of count rows written."""
    events = OutcomeEvent.all_tenants.all()
    existing = OutcomeCount.all_tenants.all()
    if tenant is not None:
        events = events.filter(tenant=tenant)
        existing = existing.filter(tenant=tenant)
    rows: Iterable[dict] = (
        events.order_by()
        .values("tenant_id", "metric_type", "domain", "event_type")
        .annotate(n=Count("id"))
    )
    with transaction.atomic():
        existing.delete()
        created = OutcomeCount.all_tenants.bulk_create(
            [
                OutcomeCount(
                    tenant_id=row["tenant_id"],
                    metric_type=row["metric_type"],
                    domain=row["domain"],
                    event_type=row["event_type"],
                    count=row["n"],
                )
                for row in rows
            ],
            batch_size=1_000,
        )
    return len(created)
