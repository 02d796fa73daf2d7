"""Rollups: what a series reads instead of raw events (DESIGN §8.6).

Every event recorded adds itself, in the events' own transaction, to nine rollup rows: its
minute, hour and UTC day, each for its (metric, domain, event type), its (metric, domain) and
its metric (outcomes.models.OutcomeRollup). A series bucket in any IANA time zone is a run of
whole UTC days, hours and minutes (`cover`), so a series reads only its buckets' rows, never an
event. Minutes are the base: every offset in use today is a whole number of minutes (+05:30,
+05:45, -03:30 included), so every local hour, day and week starts on a minute; so do the
historic local mean times with seconds, once their boundary is rounded down to its minute.

Writes (`rollups_add`) take the rows' locks in one order, sorted by the rows' unique key, as
the summary counts do; every writer sorts the same way, so two never wait on each other in a
cycle. Lock order within an ingest: OutcomeCount rows, then OutcomeRollup rows.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connections
from django.db.models import Q
from psycopg.types.numeric import Int4, Int8

from agent33.tenancy.models import Tenant

from . import sketches
from .models import ANY, OutcomeRollup, RollupSpan

__all__ = [
    "Cell",
    "RollupInput",
    "cells_from_arrays",
    "cells_of",
    "cover",
    "rollups_add",
    "rollups_read",
]

SPANS: tuple[int, ...] = (RollupSpan.DAY, RollupSpan.HOUR, RollupSpan.MINUTE)  # largest first
_KEY_BATCH = 2_900  # rows per ORM statement: 11 values each, within SQLite's 32,766
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RollupKey = tuple[str, str, str]  # (metric_type, domain or ANY, event_type or ANY)


@dataclass(frozen=True, slots=True)
class RollupInput:
    """What a rollup needs of one event."""

    metric_type: str
    domain: str
    event_type: str
    value: float
    occurred_at: datetime


@dataclass(slots=True)
class Cell:
    key: RollupKey
    span: int
    start: int  # epoch seconds, a multiple of span
    count: int
    total: float
    minimum: float
    maximum: float
    sketch: bytes


def _epoch_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)


def cells_of(events: Sequence[RollupInput]) -> list[Cell]:
    """The rollup rows these events add to, with their contribution: nine per event, fewer
    when events share a key and a bucket. Vectorised (numpy): a bulk of 10,000 events costs
    a few milliseconds before its rows are written."""
    if not events:
        return []
    key_ids: dict[RollupKey, int] = {}
    fine_ids = [
        key_ids.setdefault((e.metric_type, e.domain, e.event_type), len(key_ids))
        for e in events
    ]
    return cells_from_arrays(
        list(key_ids),
        np.array(fine_ids, dtype=np.int64),
        np.floor(np.array([e.occurred_at.timestamp() for e in events])).astype(np.int64),
        np.array([e.value for e in events], dtype=np.float64),
    )


def cells_from_arrays(
    fine_keys: list[RollupKey], fine_of_event: np.ndarray, seconds: np.ndarray,
    values: np.ndarray,
) -> list[Cell]:
    """`cells_of` for events given as arrays: each event's index into `fine_keys` (its
    (metric, domain, event type)), its epoch second and its value."""
    keys: list[RollupKey] = list(fine_keys)
    key_ids = {key: index for index, key in enumerate(keys)}

    def key_id(key: RollupKey) -> int:
        found = key_ids.get(key)
        if found is None:
            found = key_ids[key] = len(keys)
            keys.append(key)
        return found

    # The coarser keys of each distinct fine key (not of each event).
    levels = [np.arange(len(fine_keys), dtype=np.int64)]
    levels.append(np.array([key_id((m, d, ANY)) for m, d, _ in fine_keys], dtype=np.int64))
    levels.append(np.array([key_id((m, ANY, ANY)) for m, _, _ in fine_keys], dtype=np.int64))
    slots = sketches.slots_of(values)

    cells: list[Cell] = []
    for level in levels:
        event_keys = level[fine_of_event]
        for span in SPANS:
            starts = seconds // span * span
            cells += _cells(keys, span, event_keys, starts, values, slots)
    return cells


def _cells(
    keys: list[RollupKey],
    span: int,
    event_keys: np.ndarray,
    starts: np.ndarray,
    values: np.ndarray,
    slots: np.ndarray,
) -> list[Cell]:
    """Group events by (key, bucket start): count, sum, min, max and the sketch of each."""
    order = np.lexsort((slots, starts, event_keys))
    key_sorted, start_sorted = event_keys[order], starts[order]
    value_sorted, slot_sorted = values[order], slots[order]
    new_cell = np.ones(len(order), dtype=bool)
    new_cell[1:] = (key_sorted[1:] != key_sorted[:-1]) | (start_sorted[1:] != start_sorted[:-1])
    first = np.flatnonzero(new_cell)
    counts = np.diff(np.append(first, len(order)))
    totals = np.add.reduceat(value_sorted, first)
    minima = np.minimum.reduceat(value_sorted, first)
    maxima = np.maximum.reduceat(value_sorted, first)
    # Within a cell the slots are sorted: runs of one slot are the sketch's bins.
    new_bin = new_cell.copy()
    new_bin[1:] |= slot_sorted[1:] != slot_sorted[:-1]
    bin_first = np.flatnonzero(new_bin)
    bin_counts = np.diff(np.append(bin_first, len(order)))
    bin_of_cell = np.searchsorted(bin_first, first)
    bin_bounds = np.append(bin_of_cell, len(bin_first))
    bin_slots = slot_sorted[bin_first]
    cells = []
    for index, position in enumerate(first.tolist()):
        low, high = bin_bounds[index], bin_bounds[index + 1]
        cells.append(
            Cell(
                key=keys[int(key_sorted[position])],
                span=span,
                start=int(start_sorted[position]),
                count=int(counts[index]),
                total=float(totals[index]),
                minimum=float(minima[index]),
                maximum=float(maxima[index]),
                sketch=sketches.encode_slots(bin_slots[low:high], bin_counts[low:high]),
            )
        )
    return cells


def _row(tenant_id: str, cell: Cell, writer: int) -> OutcomeRollup:
    metric_type, domain, event_type = cell.key
    return OutcomeRollup(
        tenant_id=tenant_id,
        metric_type=metric_type,
        domain=domain,
        event_type=event_type,
        span=cell.span,
        bucket_start=_EPOCH + timedelta(seconds=cell.start),
        count=cell.count,
        total=cell.total,
        minimum=cell.minimum,
        maximum=cell.maximum,
        sketch=cell.sketch,
        writer=writer,
    )


_UNIQUE = ["tenant", "metric_type", "domain", "event_type", "span", "bucket_start"]
_VALUES = ["count", "total", "minimum", "maximum", "sketch"]


def rollups_add(tenant: Tenant, cells: Iterable[Cell]) -> None:
    """Add the cells to the tenant's rollup rows. Call it inside the events' transaction,
    in the tenant's scope. PostgreSQL: one statement per 5,000 rows (_add_postgresql);
    elsewhere the ORM (_add_orm)."""
    cells = list(cells)
    if not cells:
        return
    if connections[OutcomeRollup.objects.db].vendor == "postgresql":
        _add_postgresql(tenant, cells)
    else:
        _add_orm(tenant, cells)


def _add_orm(tenant: Tenant, cells: list[Cell]) -> None:
    """Per 2,900 rows, in the rows' key order: one upsert inserts the missing rows complete
    (stamped with this call's `writer`) and row-locks the existing ones without changing
    them; one read fetches the rows this call did not insert (they are locked now); one
    upsert writes those merged. A bulk of new buckets (a backfill) is two statements per
    2,900 rows; a bulk into live buckets, three.
    """
    ordered = sorted(cells, key=lambda cell: (*cell.key, cell.span, cell.start))
    writer = secrets.randbits(63)
    for begin in range(0, len(ordered), _KEY_BATCH):
        chunk = ordered[begin : begin + _KEY_BATCH]
        rows = OutcomeRollup.objects.bulk_create(
            [_row(tenant.pk, cell, writer) for cell in chunk],
            update_conflicts=True,
            unique_fields=_UNIQUE,
            update_fields=["span"],  # unchanged: the row is only locked
        )
        cell_of_pk = {row.pk: cell for row, cell in zip(rows, chunk, strict=True)}
        found = (
            OutcomeRollup.objects.filter(tenant=tenant, pk__in=list(cell_of_pk))
            .exclude(writer=writer)
            .values_list("pk", *_VALUES)
        )
        merged = []
        for pk, count, total, minimum, maximum, sketch in found:
            cell = cell_of_pk[pk]
            merged.append(
                _row(
                    tenant.pk,
                    Cell(
                        key=cell.key,
                        span=cell.span,
                        start=cell.start,
                        count=count + cell.count,
                        total=total + cell.total,
                        minimum=min(minimum, cell.minimum),
                        maximum=max(maximum, cell.maximum),
                        sketch=sketches.merge(sketch, cell.sketch),
                    ),
                    writer,
                )
            )
        if merged:
            OutcomeRollup.objects.bulk_create(
                merged, update_conflicts=True, unique_fields=_UNIQUE, update_fields=_VALUES
            )


_PG_BATCH = 5_000


def _add_postgresql(tenant: Tenant, cells: list[Cell]) -> None:
    """The rows as ten arrays, unnested into one INSERT ... ON CONFLICT DO UPDATE that adds
    counts and sums, keeps the smaller minimum and larger maximum, and appends the sketch
    bins (duplicates are summed when read; a row grown past sketches.COMPACT_AT pairs is
    re-summed in the same transaction). The rows are inserted, so locked, in key order (ORDER BY).

    Hand-written: the ORM's upsert cannot add to a column, so it takes a read and a second
    upsert per batch, and Django's multi-row VALUES costs ~0.1 ms of Python per row; this
    statement was 7-8x faster on a bulk's rows (bench/outcomes_ingest.py, "rollups: ORM vs
    unnest upsert")."""
    connection = connections[OutcomeRollup.objects.db]
    table = connection.ops.quote_name(OutcomeRollup._meta.db_table)
    sql = (
        f"INSERT INTO {table} AS r (tenant_id, metric_type, domain, event_type, span, "  # noqa: S608
        "bucket_start, count, total, minimum, maximum, sketch, writer) "
        "SELECT %s, c.* , 0 FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], "
        "%s::integer[], %s::timestamptz[], %s::bigint[], %s::float8[], %s::float8[], "
        "%s::float8[], %s::bytea[]) AS c(metric_type, domain, event_type, span, bucket_start, "
        "count, total, minimum, maximum, sketch) "
        "ORDER BY c.metric_type, c.domain, c.event_type, c.span, c.bucket_start "
        "ON CONFLICT (tenant_id, metric_type, domain, event_type, span, bucket_start) "
        "DO UPDATE SET count = r.count + EXCLUDED.count, total = r.total + EXCLUDED.total, "
        "minimum = LEAST(r.minimum, EXCLUDED.minimum), "
        "maximum = GREATEST(r.maximum, EXCLUDED.maximum), sketch = r.sketch || EXCLUDED.sketch "
        f"RETURNING r.id, CASE WHEN octet_length(r.sketch) > {sketches.COMPACT_BYTES:d} "
        "THEN r.sketch END"
    )
    ordered = sorted(cells, key=lambda cell: (*cell.key, cell.span, cell.start))
    grown: list[tuple[int, bytes]] = []
    with connection.cursor() as cursor:
        for begin in range(0, len(ordered), _PG_BATCH):
            chunk = ordered[begin : begin + _PG_BATCH]
            cursor.execute(sql, [
                tenant.pk,
                [c.key[0] for c in chunk], [c.key[1] for c in chunk], [c.key[2] for c in chunk],
                # Typed, so psycopg does not size the array by its first numbers.
                [Int4(c.span) for c in chunk],
                [_EPOCH + timedelta(seconds=c.start) for c in chunk],
                [Int8(c.count) for c in chunk], [c.total for c in chunk],
                [c.minimum for c in chunk], [c.maximum for c in chunk],
                [c.sketch for c in chunk],
            ])
            grown += [(pk, sketch) for pk, sketch in cursor.fetchall() if sketch is not None]
        if grown:
            # Rows this transaction holds (it just wrote them): their bins re-summed.
            cursor.execute(
                f"UPDATE {table} AS r SET sketch = c.sketch "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bytea[]) AS c(id, sketch) WHERE r.id = c.id",
                [[Int8(pk) for pk, _ in grown],
                 [sketches.compact(sketch) for _, sketch in grown]],
            )


# --- reading --------------------------------------------------------------------------------


def cover(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) (epoch seconds, whole minutes) as the fewest stored buckets: (span,
    bucket start) pairs, the largest spans that fit, in time order."""
    cells = []
    moment = start
    while moment < end:
        for span in SPANS:
            if moment % span == 0 and moment + span <= end:
                cells.append((span, moment))
                moment += span
                break
        else:  # not on a minute: cannot happen for minute-aligned bounds
            raise ValueError(f"{moment} is not on a minute")
    return cells


_MAX_RANGES = 32  # range conditions per span; more runs than this are listed instead
_MAX_LISTED = 20_000  # bucket starts per statement (SQLite allows 32,766 parameters)


def _conditions(cells: Sequence[tuple[int, int]]) -> list[list[Q]]:
    """The conditions that fetch exactly these cells, grouped per statement: per span, one
    range per run of consecutive buckets (runs one bucket apart are read as one, the extra
    row dropped after), or, past _MAX_RANGES runs (a :30 zone's day boundaries, a long
    series of local weeks), the bucket starts themselves."""
    by_span: dict[int, list[int]] = {}
    for span, start in cells:
        by_span.setdefault(span, []).append(start)
    statements: list[list[Q]] = [[]]
    for span, starts in by_span.items():
        runs: list[list[int]] = []
        for start in starts:
            if runs and start - runs[-1][1] <= span:
                runs[-1][1] = start + span
            else:
                runs.append([start, start + span])
        if len(runs) <= _MAX_RANGES:
            statements[0] += [
                Q(span=span, bucket_start__gte=_EPOCH + timedelta(seconds=low),
                  bucket_start__lt=_EPOCH + timedelta(seconds=high))
                for low, high in runs
            ]
            continue
        for begin in range(0, len(starts), _MAX_LISTED):
            statements.append([Q(span=span, bucket_start__in=[
                _EPOCH + timedelta(seconds=start)
                for start in starts[begin : begin + _MAX_LISTED]])])
    return [statement for statement in statements if statement]


@dataclass(frozen=True)
class BucketStats:
    count: int
    total: float | None
    minimum: float | None
    maximum: float | None
    p50: float | None
    p95: float | None

    @property
    def avg(self) -> float | None:
        return None if not self.count else self.total / self.count


def rollups_read(
    *, tenant: Tenant, key: RollupKey, boundaries: Sequence[int]
) -> tuple[list[BucketStats], BucketStats]:
    """Stats of each bucket [boundaries[i], boundaries[i + 1]) (epoch seconds, whole
    minutes) for one rollup key, and of all of them together: one query over the rows
    `cover` names, never the events."""
    cells = []
    for low, high in itertools.pairwise(boundaries):
        cells += cover(low, high)
    metric_type, domain, event_type = key
    wanted = set(cells)
    rows = [
        row
        for conditions in _conditions(cells)
        for row in OutcomeRollup.objects.filter(
            Q(*conditions, _connector=Q.OR), tenant=tenant, metric_type=metric_type,
            domain=domain, event_type=event_type,
        )
        .order_by()
        .values_list("span", "bucket_start", "count", "total", "minimum", "maximum", "sketch")
        if (row[0], _epoch_seconds(row[1])) in wanted  # a merged run's extra rows
    ]
    rows = [row[1:] for row in rows]
    starts = np.asarray(boundaries[:-1], dtype=np.int64)
    n = len(starts)
    bucket_of_row = (np.searchsorted(
        starts, [_epoch_seconds(row[0]) for row in rows], side="right") - 1).tolist()
    counts = [0] * n
    totals = [0.0] * n
    minima: list[float | None] = [None] * n
    maxima: list[float | None] = [None] * n
    for bucket, (_, count, total, minimum, maximum, _sketch) in zip(
            bucket_of_row, rows, strict=True):
        counts[bucket] += count
        totals[bucket] += total
        minima[bucket] = minimum if minima[bucket] is None else min(minima[bucket], minimum)
        maxima[bucket] = maximum if maxima[bucket] is None else max(maxima[bucket], maximum)
    per_bucket, whole = sketches.grouped_quantiles(
        [row[5] for row in rows], bucket_of_row, n, (0.5, 0.95))
    buckets = [_bucket(counts[i], totals[i], minima[i], maxima[i], per_bucket[i])
               for i in range(n)]
    summary = _bucket(
        sum(counts), sum(totals), min((v for v in minima if v is not None), default=None),
        max((v for v in maxima if v is not None), default=None), whole,
    )
    return buckets, summary


def _bucket(count: int, total: float, minimum, maximum, quantiles) -> BucketStats:
    if not count:
        return BucketStats(0, None, None, None, None, None)
    # The exact min and max bound every quantile: a bin's value may lie just outside them
    # (a bucket of ones answers 1, not its bin's 0.99).
    p50, p95 = (min(max(q, minimum), maximum) for q in quantiles)
    return BucketStats(count, total, minimum, maximum, p50, p95)
