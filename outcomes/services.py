"""Every write to outcome events, their counts and the trend snapshots. Other apps record
events through event_record / event_record_bulk, never by writing the models."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BigIntegerField, Case, Count, F, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agent33.ids import new_id
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from .limits import events_charged
from .models import OutcomeCount, OutcomeEvent, OutcomeRollup, OutcomeTrendSnapshot
from .rollups import RollupInput, cells_of, rollups_add
from .selectors import trend_stats_many
from .trends import TrendStats
from .validation import CleanEvent, EventInvalid, clean_event, clean_events

__all__ = [
    "event_record",
    "event_record_bulk",
    "events_purge_expired",
    "outcome_counts_rebuild",
    "outcome_rollups_rebuild",
    "trend_snapshots_rebuild",
    "trend_snapshots_save",
]

logger = logging.getLogger("agent33.outcomes")

CountKey = tuple[str, str, str]  # (metric_type, domain, event_type)
TrendKey = tuple[str, str]  # (metric_type, domain)
WatchedKey = tuple[str, ...]  # a TrendKey, or a CountKey for a trend per event type

_INSERT_BATCH = 2_000  # rows per INSERT of bulk_create (SQLite lowers it to its own limit)
# Count or snapshot keys per statement: 5 to 11 values each, well within SQLite's 32,766.
_KEY_BATCH = 2_000
_TASK_KEYS = 1_000  # trend keys per decline-evaluation job


def event_record(
    *,
    tenant: Tenant,
    domain: str,
    event_type: str,
    metric_type: str,
    value: float,
    occurred_at: datetime | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    metered: bool = False,
) -> OutcomeEvent:
    """Record one measurement. Bad input raises ValidationError naming the field. Every
    event is watched: after commit its trend is evaluated for a decline. `metered`: a valid
    event counts against the tenant's per-minute allowance (outcomes/limits.py; the API)."""
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
    with events_charged(tenant=tenant, events=int(metered)), \
            transaction.atomic(savepoint=False), tenant_scope(tenant):
        event.save(force_insert=True)
        _counts_add(tenant, {(event.metric_type, event.domain, event.event_type): 1})
        _rollups_add(tenant, [event])
        _notify_on_commit(tenant, {(event.metric_type, event.domain)})
    return event


def event_record_bulk(
    *, tenant: Tenant, events: Sequence[Mapping[str, Any]], metered: bool = False,
    trends_per_event_type: bool = False,
) -> int:
    """Record up to 10,000 events, all or nothing; returns how many were stored.

    The first bad event raises ValidationError with fields `events.<index>.<field>`, and
    nothing is stored. The rows go in with `bulk_create`, in one transaction together with
    the summary counts and the rollups. `metered`: valid events count against the tenant's
    per-minute allowance (outcomes/limits.py; the API), and a refused or invalid bulk counts
    nothing. `trends_per_event_type` (CTRF: an event type is a test) watches each (metric,
    domain, event type) for declines instead of each domain.
    """
    cleaned = clean_events(events)
    now = timezone.now()
    counts: Counter[CountKey] = Counter(
        (e.metric_type, e.domain, e.event_type) for e in cleaned
    )
    with events_charged(tenant=tenant, events=len(cleaned) if metered else 0), \
            transaction.atomic(savepoint=False), tenant_scope(tenant):  # as in event_record
        rows = _insert_events(tenant, cleaned, now)
        _counts_add(tenant, counts)
        _rollups_add(tenant, rows)
        _notify_on_commit(
            tenant,
            set(counts) if trends_per_event_type else {(m, d) for m, d, _ in counts},
        )
    return len(cleaned)


def _ordered_ids(count: int) -> list[str]:
    """Fresh random ids, sorted: events of one request that share an occurred_at (say,
    none was given) then keep their submission order, since ties sort by id."""
    return sorted(new_id("outcome") for _ in range(count))


def _insert_events(
    tenant: Tenant, cleaned: list[CleanEvent], now: datetime
) -> list[OutcomeEvent]:
    """The events' rows, a multi-row INSERT per 2,000. PostgreSQL's COPY is not used: on a
    100,000-event ingest it was about 2x faster at the service level, short of the 3x a
    hand-written statement must earn (bench/outcomes_ingest.py, README Design notes)."""
    rows = _new_events(tenant, cleaned, now)
    OutcomeEvent.objects.bulk_create(rows, batch_size=_INSERT_BATCH)
    return rows


def _rollups_add(tenant: Tenant, events: Sequence[OutcomeEvent]) -> None:
    """The events' minutes, hours and days in the rollups a series reads (outcomes.rollups),
    in the events' transaction: a series is current the moment the events commit."""
    rollups_add(tenant, cells_of([
        RollupInput(e.metric_type, e.domain, e.event_type, e.value, e.occurred_at)
        for e in events
    ]))


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


def _notify_on_commit(tenant: Tenant, keys: set[WatchedKey]) -> None:
    """Inside the transaction that records the events: have the touched trends evaluated
    (snapshots, declines). Up to AGENT33_DECLINES_INLINE_KEYS keys are evaluated by this
    request right after its commit, so a client sees its decline's intake in its next
    read. More keys become background jobs of at most 1,000 keys each, queued in this
    transaction: they exist exactly when the events do, so a process killed right after
    answering leaves none unevaluated, and a failed evaluation is tried again."""
    inline_limit = getattr(settings, "AGENT33_DECLINES_INLINE_KEYS", 100)
    if len(keys) > inline_limit:
        _queue_evaluations(tenant, keys)
    else:
        transaction.on_commit(lambda: _after_events_committed(tenant, frozenset(keys)))


def _queue_evaluations(tenant: Tenant, keys: Iterable[WatchedKey]) -> None:
    from agent33 import jobs

    ordered = [list(key) for key in sorted(keys)]
    for start in range(0, len(ordered), _TASK_KEYS):
        jobs.enqueue("outcomes.evaluate_declines", tenant_id=tenant.pk,
                     keys=ordered[start : start + _TASK_KEYS])


def _after_events_committed(tenant: Tenant, keys: frozenset[WatchedKey]) -> None:
    """A few keys, right after the events commit. If the evaluation fails, the recorded
    events stand and the evaluation becomes a job, tried again on the worker."""
    from .declines import declines_evaluate

    try:
        declines_evaluate(tenant=tenant, keys=keys)
    except Exception:
        logger.exception("Could not evaluate declines for %s: queued for the worker", tenant.pk)
        # The events are committed and answered for; an error here would only make the
        # client send them again. If even the queue refuses, the log line is what is left.
        try:
            _queue_evaluations(tenant, keys)
        except Exception:
            logger.exception("Could not queue the evaluation of %d keys of %s", len(keys),
                             tenant.pk)


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


# --- retention (AGENT33_EVENT_RETENTION_DAYS) ----------------------------------------------

PURGE_BATCH = 5_000  # events per transaction
PURGE_MAX_BATCHES = 200  # per run: a first run over a long history ends, the next goes on


def retention_cutoff(now: datetime | None = None) -> datetime | None:
    """Events that occurred before this are removed; None when retention is off."""
    days = getattr(settings, "AGENT33_EVENT_RETENTION_DAYS", None)
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def events_purge_expired(
    *, now: datetime | None = None, batch_size: int = PURGE_BATCH,
    max_batches: int = PURGE_MAX_BATCHES,
) -> int:
    """Remove raw events that occurred more than AGENT33_EVENT_RETENTION_DAYS ago (unset:
    nothing), every tenant, in transactions of `batch_size` events, at most `max_batches`
    per run; return how many were removed. The periodic job of the worker, and
    `manage.py outcomes_purge_events`.

    Rollups stay, so series over old periods still answer; the summary counts go down with
    the events (the same key-ordered count write as ingest, so purge and ingest never
    deadlock). Each batch locks its events with SKIP LOCKED: two purges running at once
    take different events, and none is counted down twice.
    """
    cutoff = retention_cutoff(now)
    if cutoff is None:
        return 0
    removed = batches = 0
    for tenant in Tenant.objects.order_by("pk"):
        while batches < max_batches:
            with transaction.atomic(), tenant_scope(tenant):
                # The (tenant, occurred_at, id) index, oldest first, a batch at a time.
                expired = list(
                    OutcomeEvent.objects.filter(tenant=tenant, occurred_at__lt=cutoff)
                    .order_by("occurred_at", "id")
                    .select_for_update(skip_locked=True)
                    .values_list("pk", "metric_type", "domain", "event_type")[:batch_size]
                )
                if expired:
                    OutcomeEvent.objects.filter(
                        tenant=tenant, pk__in=[row[0] for row in expired]
                    ).delete()
                    gone = Counter(row[1:] for row in expired)
                    _counts_add(tenant, {key: -n for key, n in gone.items()})
            batches += 1
            removed += len(expired)
            if len(expired) < batch_size:
                break
    if removed:
        logger.info("removed %d outcome events older than %s", removed, cutoff.isoformat())
    return removed


def rollups_rebuild_since(now: datetime | None = None) -> datetime | None:
    """Where a rebuild may start when retention removed older events: the first UTC
    midnight after the cutoff, so every bucket it rebuilds still has all its events."""
    cutoff = retention_cutoff(now)
    if cutoff is None:
        return None
    return datetime.combine(cutoff.astimezone(UTC).date() + timedelta(days=1), time.min, UTC)


_REBUILD_CHUNK = 50_000  # events read per step


def outcome_rollups_rebuild(
    *, tenant: Tenant | None = None, since: datetime | None = None
) -> int:
    """Recompute the rollups from the raw events (after a raw load or a repair), for one
    tenant or all, from `since` (a UTC midnight) on; returns the rollup rows written.

    Rollups before `since` are kept. Without `since`, and with retention on, it starts
    after the retention cutoff (rollups_rebuild_since): removed events cannot be summed
    again. Each tenant is rebuilt in one transaction, reading its events in occurred_at
    order, a UTC day at a time, so every bucket is written once."""
    if since is None:
        since = rollups_rebuild_since()
    if since is not None and (since.astimezone(UTC).time() != time.min):
        raise ValueError("`since` must be a UTC midnight (a day bucket's start).")
    owners = [tenant] if tenant is not None else list(Tenant.objects.order_by("pk"))
    written = 0
    for owner in owners:
        with transaction.atomic(), tenant_scope(owner):
            stale = OutcomeRollup.objects.filter(tenant=owner)
            events = OutcomeEvent.objects.filter(tenant=owner)
            if since is not None:
                stale = stale.filter(bucket_start__gte=since)
                events = events.filter(occurred_at__gte=since)
            stale.delete()
            day: list[RollupInput] = []
            current = None
            for metric_type, domain, event_type, value, occurred_at in (
                events.order_by("occurred_at", "id")
                .values_list("metric_type", "domain", "event_type", "value", "occurred_at")
                .iterator(chunk_size=_REBUILD_CHUNK)
            ):
                today = occurred_at.astimezone(UTC).date()
                if current is not None and today != current and len(day) >= _REBUILD_CHUNK:
                    written += _rollups_write(owner, day)
                    day = []
                current = today
                day.append(RollupInput(metric_type, domain, event_type, value, occurred_at))
            written += _rollups_write(owner, day)
    return written


def _rollups_write(tenant: Tenant, events: list[RollupInput]) -> int:
    cells = cells_of(events)
    rollups_add(tenant, cells)
    return len(cells)
