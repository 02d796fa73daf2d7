"""Every write to outcome events, their counts and the trend snapshots. Other apps record
events through event_record / event_record_bulk, never by writing the models."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BigIntegerField, Case, Count, F, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agent33.ids import new_id
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from .models import OutcomeCount, OutcomeEvent, OutcomeTrendSnapshot
from .selectors import trend_stats_many
from .trends import TrendStats
from .validation import CleanEvent, EventInvalid, clean_event, clean_events

__all__ = [
    "event_record",
    "event_record_bulk",
    "outcome_counts_rebuild",
    "trend_snapshots_rebuild",
    "trend_snapshots_save",
]

logger = logging.getLogger("agent33.outcomes")

CountKey = tuple[str, str, str]  # (metric_type, domain, event_type)
TrendKey = tuple[str, str]  # (metric_type, domain)

_INSERT_BATCH = 2_000  # rows per INSERT of bulk_create (SQLite lowers it to its own limit)
# Count or snapshot keys per statement: 5 to 11 values each, well within SQLite's 32,766.
_KEY_BATCH = 2_000
_TASK_KEYS = 1_000  # trend keys per decline-evaluation task


def event_record(
    *,
    tenant: Tenant,
    domain: str,
    event_type: str,
    metric_type: str,
    value: float,
    occurred_at: datetime | str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> OutcomeEvent:
    """Record one measurement. Bad input raises ValidationError naming the field. Every
    event is watched: after commit its trend is evaluated for a decline."""
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
    [event] = _new_events(tenant, [clean], timezone.now())
    # Joins a caller's transaction whole (no savepoint round trips): an event recorded with
    # the fact it describes (a request's ending) commits or rolls back with it.
    with transaction.atomic(savepoint=False), tenant_scope(tenant):
        event.save(force_insert=True)
        _counts_add(tenant, {(event.metric_type, event.domain, event.event_type): 1})
        _notify_on_commit(tenant, {(event.metric_type, event.domain)})
    return event


def event_record_bulk(*, tenant: Tenant, events: Sequence[Mapping[str, Any]]) -> int:
    """Record up to 10,000 events, all or nothing; returns how many were stored.

    The first bad event raises ValidationError with fields `events.<index>.<field>`, and
    nothing is stored. The rows go in with `bulk_create`, in one transaction together with
    the summary counts.
    """
    cleaned = clean_events(events)
    now = timezone.now()
    counts: Counter[CountKey] = Counter(
        (e.metric_type, e.domain, e.event_type) for e in cleaned
    )
    with transaction.atomic(savepoint=False), tenant_scope(tenant):  # as in event_record
        _insert_events(tenant, cleaned, now)
        _counts_add(tenant, counts)
        _notify_on_commit(tenant, {(metric, domain) for metric, domain, _ in counts})
    return len(cleaned)


def _ordered_ids(count: int) -> list[str]:
    """Fresh random ids, sorted: events of one request that share an occurred_at (say,
    none was given) then keep their submission order, since ties sort by id."""
    return sorted(new_id("outcome") for _ in range(count))


def _insert_events(tenant: Tenant, cleaned: list[CleanEvent], now: datetime) -> None:
    """The events' rows, a multi-row INSERT per 2,000. PostgreSQL's COPY is not used: on a
    100,000-event ingest it was about 2x faster at the service level, short of the 3x a
    hand-written statement must earn (bench/outcomes_ingest.py, README Design notes)."""
    OutcomeEvent.objects.bulk_create(_new_events(tenant, cleaned, now), batch_size=_INSERT_BATCH)


def _new_events(tenant: Tenant, cleaned: list[CleanEvent], now: datetime) -> list[OutcomeEvent]:
    return [
        OutcomeEvent(
            id=pk,
            tenant_id=tenant.pk,
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


def _counts_add(tenant: Tenant, counts: Mapping[CountKey, int]) -> None:
    """Add to the per-key counts, two statements per 2,000 keys, in the events' transaction.

    The first statement creates the missing count rows and row-locks the existing ones, in
    key order (an upsert whose conflict "update" sets a key column to itself); the second
    adds the increments to the rows it now holds. Keys go in sorted order, so concurrent
    writers take the count rows' locks in the same order and never deadlock.

    One key (every single event) whose row exists, as it does after the key's first event:
    one UPDATE locks and adds, a round trip fewer on the hot path (bench/ab.py). One row
    lock cannot be taken out of order.
    """
    if len(counts) == 1:
        [((metric_type, domain, event_type), increment)] = counts.items()
        if OutcomeCount.objects.filter(
            tenant=tenant, metric_type=metric_type, domain=domain, event_type=event_type
        ).update(count=F("count") + increment):
            return
    items = sorted(counts.items())
    for start in range(0, len(items), _KEY_BATCH):
        chunk = items[start : start + _KEY_BATCH]
        rows = OutcomeCount.objects.bulk_create(
            [
                OutcomeCount(
                    tenant_id=tenant.pk,
                    metric_type=metric_type,
                    domain=domain,
                    event_type=event_type,
                    count=0,
                )
                for (metric_type, domain, event_type), _ in chunk
            ],
            update_conflicts=True,
            unique_fields=["tenant", "metric_type", "domain", "event_type"],
            update_fields=["metric_type"],  # unchanged: the row is only locked
        )
        by_increment: dict[int, list[int]] = defaultdict(list)
        for row, (_, increment) in zip(rows, chunk, strict=True):
            by_increment[increment].append(row.pk)
        if len(by_increment) == 1:
            [(increment, pks)] = by_increment.items()
            added = Value(increment)
        else:
            pks = [row.pk for row in rows]
            added = Case(
                *(When(pk__in=ids, then=Value(n)) for n, ids in by_increment.items()),
                output_field=BigIntegerField(),
            )
        OutcomeCount.objects.filter(tenant=tenant, pk__in=pks).update(count=F("count") + added)


def _notify_on_commit(tenant: Tenant, keys: set[TrendKey]) -> None:
    transaction.on_commit(lambda: _after_events_committed(tenant, frozenset(keys)))


def _after_events_committed(tenant: Tenant, keys: frozenset[TrendKey]) -> None:
    """Once per request, after commit: evaluate the touched trends (snapshots, declines).
    With a broker: Celery tasks of at most 1,000 keys each, so a bulk of many keys spreads
    over the workers. Without one: a few keys right here; a bulk of more than
    AGENT33_DECLINES_INLINE_KEYS on this process's background evaluator (outcomes/deferred),
    so the response does not wait for it. A failure there never undoes or fails the recorded
    events."""
    from .declines import declines_evaluate
    from .deferred import evaluate_in_background
    from .tasks import evaluate_declines

    try:
        if current_app.conf.task_always_eager:
            inline_limit = getattr(settings, "AGENT33_DECLINES_INLINE_KEYS", 100)
            # The tenant is already in hand: no Celery eager tracing, no reload of its row.
            if len(keys) <= inline_limit or not evaluate_in_background(tenant.pk, keys):
                declines_evaluate(tenant=tenant, keys=keys)
        else:
            ordered = [list(key) for key in sorted(keys)]
            for start in range(0, len(ordered), _TASK_KEYS):
                evaluate_declines.delay(tenant.pk, ordered[start : start + _TASK_KEYS])
    except Exception:  # a broker outage must not turn a stored event into an error
        logger.exception("Could not evaluate declines for %s", tenant.pk)


def trend_snapshots_save(*, tenant: Tenant, trends: Mapping[TrendKey, TrendStats]) -> None:
    """Store the latest evaluation of each (metric, domain) trend, with the number of events
    behind it (from the counts), for the dashboard's per-domain table. Call it in the
    tenant's scope. Keys go in sorted order (no deadlock between concurrent evaluations);
    a concurrent evaluation of the same key may win with the older reading until the next
    event of that key evaluates it again."""
    now = timezone.now()
    if len(trends) == 1 and _snapshot_replace(tenant, *next(iter(trends.items())), now):
        return
    keys = sorted(trends, key=lambda key: (key[1], key[0]))
    for start in range(0, len(keys), _KEY_BATCH):
        chunk = keys[start : start + _KEY_BATCH]
        event_counts = {
            (metric_type, domain): total
            for metric_type, domain, total in OutcomeCount.objects.filter(
                tenant=tenant,
                metric_type__in={metric_type for metric_type, _ in chunk},
                domain__in={domain for _, domain in chunk},
            )
            .order_by()
            .values("metric_type", "domain")
            .annotate(total=Sum("count"))
            .values_list("metric_type", "domain", "total")
        }
        snapshots = []
        for metric_type, domain in chunk:
            stats = trends[(metric_type, domain)]
            snapshots.append(
                OutcomeTrendSnapshot(
                    tenant_id=tenant.pk,
                    metric_type=metric_type,
                    domain=domain,
                    direction=stats.direction,
                    change_pct=stats.change_pct,
                    sample_size=stats.sample_size,
                    previous_avg=stats.previous_avg,
                    current_avg=stats.current_avg,
                    event_count=event_counts.get((metric_type, domain), 0),
                    evaluated_at=now,
                )
            )
        OutcomeTrendSnapshot.objects.bulk_create(
            snapshots,
            update_conflicts=True,
            unique_fields=["tenant", "domain", "metric_type"],
            update_fields=[
                "direction", "change_pct", "sample_size", "previous_avg", "current_avg",
                "event_count", "evaluated_at",
            ],
        )


def _snapshot_replace(tenant: Tenant, key: TrendKey, stats: TrendStats, now: datetime) -> bool:
    """One key's existing snapshot (every single event's evaluation, after the key's first)
    replaced by one UPDATE that reads the key's event count itself. After the events'
    commit it runs on its own, where the upsert of trend_snapshots_save takes a count read,
    BEGIN, INSERT and COMMIT: three round trips fewer (bench/ab.py). False when the key has
    no snapshot yet."""
    metric_type, domain = key
    event_count = (
        OutcomeCount.objects.filter(tenant=tenant, metric_type=metric_type, domain=domain)
        .order_by()
        .values("domain")
        .annotate(total=Sum("count"))
        .values("total")
    )
    return bool(
        OutcomeTrendSnapshot.objects.filter(
            tenant=tenant, metric_type=metric_type, domain=domain
        ).update(
            direction=stats.direction,
            change_pct=stats.change_pct,
            sample_size=stats.sample_size,
            previous_avg=stats.previous_avg,
            current_avg=stats.current_avg,
            event_count=Coalesce(Subquery(event_count), 0),
            evaluated_at=now,
        )
    )


def outcome_counts_rebuild(*, tenant: Tenant | None = None) -> int:
    """Recompute the summary counts from the events (after a raw load or a repair), then the
    trend snapshots from them. Returns the number of count rows written."""
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
    trend_snapshots_rebuild(tenant=tenant)
    return len(created)


def trend_snapshots_rebuild(*, tenant: Tenant | None = None) -> int:
    """Re-evaluate every (metric, domain) trend that has events, for one tenant or all, and
    replace the snapshots with the results (opening no intakes: that is decline detection's
    job when events arrive). Returns the number of snapshots written."""
    counts = OutcomeCount.all_tenants.filter(count__gt=0)
    snapshots = OutcomeTrendSnapshot.all_tenants.all()
    if tenant is not None:
        counts = counts.filter(tenant=tenant)
        snapshots = snapshots.filter(tenant=tenant)
    keys_by_tenant: dict[str, set[TrendKey]] = defaultdict(set)
    for tenant_id, metric_type, domain in counts.values_list(
        "tenant_id", "metric_type", "domain"
    ).distinct():
        keys_by_tenant[tenant_id].add((metric_type, domain))
    written = 0
    with transaction.atomic():
        snapshots.delete()
        for owner in Tenant.objects.filter(pk__in=keys_by_tenant).order_by("pk"):
            with tenant_scope(owner):
                trends = trend_stats_many(tenant=owner, keys=sorted(keys_by_tenant[owner.pk]))
                trend_snapshots_save(tenant=owner, trends=trends)
            written += len(trends)
    return written
