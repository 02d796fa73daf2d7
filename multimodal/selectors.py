"""Non-trivial reads: request lists with their result id, per-provider statistics, spend."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import NotSupportedError, connection
from django.db.models import (
    Aggregate,
    Case,
    Count,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Ceil, Floor, RowNumber
from django.utils import timezone

from agent33.tenancy.models import Tenant

from .choices import RequestState
from .models import DailySpend, MultimodalPolicy, MultimodalRequest, MultimodalResult
from .pricing import from_nanos, utc_day

__all__ = [
    "PercentileCont",
    "request_awaited",
    "request_channel",
    "request_reloaded",
    "request_result",
    "request_stats",
    "requests_with_result_id",
    "results_of",
    "spend_today",
    "spend_today_in_scope",
]

LAST_ERRORS_PER_GROUP = 5
PERCENTILES = (0.5, 0.95)


def results_of(mm_request: MultimodalRequest) -> QuerySet[MultimodalResult]:
    """The request's result rows (at most one), in the current tenant scope. Naming the
    request's tenant keeps the (tenant, request) unique index usable under an operator's
    all-tenants scope, where the manager adds no tenant condition of its own."""
    return MultimodalResult.objects.filter(tenant_id=mm_request.tenant_id,
                                           request_id=mm_request.pk)


def _result_id_subquery() -> Subquery:
    return Subquery(
        MultimodalResult.objects.filter(
            tenant_id=OuterRef("tenant_id"), request_id=OuterRef("pk")
        ).values("pk")[:1]
    )


def requests_with_result_id() -> QuerySet[MultimodalRequest]:
    """The requests in the current tenant scope with `result_ref` (the result's id, or
    None) annotated, so lists render `result_id` without a query per row."""
    return MultimodalRequest.objects.annotate(result_ref=_result_id_subquery())


def request_reloaded(mm_request: MultimodalRequest) -> MultimodalRequest:
    """A fresh copy of a request, with `result_ref`, in one query: what create, execute and
    cancel answer with."""
    return requests_with_result_id().get(pk=mm_request.pk)


def request_channel(request_id: str) -> str:
    """What a create or execute waiting for this request's end listens to (the execution
    job notifies it when the attempt ends)."""
    return f"mmreq:{request_id}"


def request_awaited(mm_request: MultimodalRequest, *, timeout: float) -> MultimodalRequest:
    """The request once it is no longer processing (the worker ended it, someone cancelled
    it, the reaper failed it), or as it is after `timeout` seconds. Sleeps meanwhile: on
    PostgreSQL until the job's NOTIFY (looking again every second), elsewhere between
    short polls (agent33/jobs/waiting.py)."""
    from agent33.jobs.waiting import wait_until

    if timeout <= 0 or mm_request.state != RequestState.PROCESSING:
        return mm_request
    # A waiting request holds a server thread: at most AGENT33_MULTIMODAL_MAX_WAITING of
    # them per process wait at once, so the others stay free for everyone else's calls.
    # Beyond that, the answer comes at once (`processing`), as with `?wait=0`.
    if not _waiting_slots().acquire(blocking=False):
        return mm_request
    try:
        def ended() -> str | None:
            state = (MultimodalRequest.objects.filter(pk=mm_request.pk)
                     .values_list("state", flat=True).first())
            return None if state == RequestState.PROCESSING else (state or "gone")

        wait_until(ended, channel=request_channel(mm_request.pk), timeout=timeout)
    finally:
        _waiting_slots().release()
    return request_reloaded(mm_request)


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _waiting_slots() -> threading.BoundedSemaphore:
    """This process's waiting slots (one semaphore per configured size: tests change it)."""
    size = max(0, int(settings.AGENT33_MULTIMODAL_MAX_WAITING))
    with _slots_lock:
        if size not in _slots:
            _slots[size] = threading.BoundedSemaphore(size) if size else _none_free()
        return _slots[size]


def _none_free() -> threading.BoundedSemaphore:
    closed = threading.BoundedSemaphore(1)
    closed.acquire()
    return closed


def request_result(mm_request: MultimodalRequest) -> MultimodalResult | None:
    return results_of(mm_request).select_related("request").first()


class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(f) WITHIN GROUP (ORDER BY expression)`: the percentile
    interpolated between the two nearest values; NULLs are left out."""

    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float):
        self.fraction = float(fraction)
        super().__init__(expression)

    def as_sql(self, compiler, connection, **extra_context):
        if connection.vendor != "postgresql":
            raise NotSupportedError("percentile_cont is PostgreSQL's; see _percentiles_by_rank")
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"percentile_cont(%s::float8) WITHIN GROUP (ORDER BY {sql})", \
            [self.fraction, *params]


def _interpolated(values: dict[int, int], size: int, fraction: float) -> float:
    """percentile_cont from the (1-based) positions around rank (size - 1) x fraction."""
    rank = (size - 1) * fraction
    low, high = math.floor(rank), math.ceil(rank)
    below, above = values[low + 1], values[high + 1]
    return below + (above - below) * (rank - low)


def _percentiles_by_rank(completed: QuerySet[MultimodalResult], key: Any
                         ) -> dict[tuple[str, str], dict[float, float]]:
    """SQLite: the same percentiles as PostgreSQL's percentile_cont, without loading the
    window: per fraction one query numbers each group's latencies in order (ROW_NUMBER over
    a sort the database does) and returns only the one or two rows around the percentile's
    rank, at most two rows per group."""
    partition = [F("request__modality"), F("provider")]
    ranked = completed.annotate(
        group_modality=key,
        position=Window(RowNumber(), partition_by=partition, order_by=F("latency_ms").asc()),
        size=Window(Count("pk"), partition_by=partition),
    )
    found: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for fraction in PERCENTILES:
        rank = (F("size") - 1) * Value(fraction)
        rows = ranked.filter(position__gte=Floor(rank) + 1, position__lte=Ceil(rank) + 1) \
            .values_list("group_modality", "provider", "position", "size", "latency_ms")
        positions: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        sizes: dict[tuple[str, str], int] = {}
        for modality, provider, position, size, latency in rows:
            positions[(modality, provider)][position] = latency
            sizes[(modality, provider)] = size
        for group, values in positions.items():
            found[group][fraction] = _interpolated(values, sizes[group], fraction)
    return found


def _whole_ms(value: float | None) -> int | None:
    return None if value is None else math.floor(value + 0.5)


def request_stats(*, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
    """Per modality x provider over requests created in [since, until): counts by state,
    success rate (completed / (completed + failed)), p50/p95 provider latency of completed
    requests (interpolated, as percentile_cont), the spend of their results, and the last
    errors. Reads through the tenant-scoped manager.

    Everything is aggregated in the database, in a fixed number of queries whatever the
    window holds: counts by state, one grouped query over the results (spend; on PostgreSQL
    also percentile_cont), on SQLite two queries that return only the rows at each
    percentile's rank, and at most 500 recent failures."""
    requests = MultimodalRequest.objects.filter(created_at__gte=since)
    if until is not None:
        requests = requests.filter(created_at__lt=until)

    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def group(modality: str, provider: str) -> dict[str, Any]:
        key = (modality, provider)
        if key not in groups:
            groups[key] = {"modality": modality, "provider": provider, "total": 0,
                           **dict.fromkeys(RequestState.values, 0)}
        return groups[key]

    for row in requests.values("modality", "provider", "state").annotate(n=Count("pk")):
        entry = group(row["modality"], row["provider"])
        entry[row["state"]] += row["n"]
        entry["total"] += row["n"]

    results = MultimodalResult.objects.filter(request__created_at__gte=since)
    if until is not None:
        results = results.filter(request__created_at__lt=until)
    completed_latency = Case(When(state=RequestState.COMPLETED, then=F("latency_ms")))
    aggregates: dict[str, Any] = {
        "spend": Sum("cost_nano_usd"),
        "unpriced": Count("pk", filter=Q(state=RequestState.COMPLETED,
                                         cost_nano_usd__isnull=True)),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates.update({f"p{round(f * 100)}": PercentileCont(completed_latency, f)
                           for f in PERCENTILES})
    by_group = results.values("request__modality", "provider").annotate(**aggregates)
    percentiles: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    spend: dict[tuple[str, str], tuple[int, int]] = {}
    for row in by_group:
        key = (row["request__modality"], row["provider"])
        spend[key] = (row["spend"] or 0, row["unpriced"])
        if postgres:
            percentiles[key] = {f: row[f"p{round(f * 100)}"] for f in PERCENTILES}
    if not postgres:
        percentiles.update(_percentiles_by_rank(
            results.filter(state=RequestState.COMPLETED, latency_ms__isnull=False),
            F("request__modality"),
        ))

    errors: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    failed = requests.filter(state=RequestState.FAILED).order_by("-finished_at", "-pk").values(
        "pk", "modality", "provider", "error_message", "finished_at"
    )[:500]
    for row in failed:
        bucket = errors[(row["modality"], row["provider"])]
        if len(bucket) < LAST_ERRORS_PER_GROUP:
            bucket.append({"request_id": row["pk"], "error_message": row["error_message"],
                           "at": row["finished_at"]})

    stats = []
    for key in sorted(groups):
        entry = groups[key]
        decided = entry[RequestState.COMPLETED] + entry[RequestState.FAILED]
        entry["success_rate"] = (
            round(entry[RequestState.COMPLETED] / decided, 4) if decided else None
        )
        entry["p50_latency_ms"] = _whole_ms(percentiles[key].get(0.5))
        entry["p95_latency_ms"] = _whole_ms(percentiles[key].get(0.95))
        nanos, unpriced = spend.get(key, (0, 0))
        entry["spend_usd"] = from_nanos(nanos)
        entry["unpriced"] = unpriced
        entry["last_errors"] = errors[key]
        stats.append(entry)
    return stats


def spend_today(tenant: Tenant, *, now: datetime | None = None) -> dict[str, Any]:
    """The tenant's spend today (UTC) against its daily limit: two indexed reads."""
    now = now or timezone.now()
    day = utc_day(now)
    row = DailySpend.objects.filter(tenant_id=tenant.pk, day=day).first()
    spent, reserved = (row.settled_nano_usd, row.reserved_nano_usd) if row else (0, 0)
    limit = (MultimodalPolicy.objects.filter(tenant_id=tenant.pk)
             .values_list("daily_spend_limit_usd", flat=True).first())
    remaining = None
    if limit is not None:
        remaining = max(Decimal(0), limit - from_nanos(spent) - from_nanos(reserved))
    return {
        "tenant_id": tenant.pk,
        "day": day,
        "spent_usd": from_nanos(spent),
        "reserved_usd": from_nanos(reserved),
        "daily_spend_limit_usd": limit,
        "remaining_usd": remaining,
        "resets_at": datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
    }


def spend_today_in_scope(*, limit: int = 20) -> list[dict[str, Any]]:
    """Today's spend of the tenants in the current scope (the hub panel): the biggest
    spenders first, each with its limit. Two queries."""
    day = utc_day(timezone.now())
    rows = list(DailySpend.objects.filter(day=day)
                .order_by("-settled_nano_usd", "tenant_id")[:limit])
    limits = dict(MultimodalPolicy.objects.filter(tenant_id__in=[r.tenant_id for r in rows])
                  .values_list("tenant_id", "daily_spend_limit_usd"))
    return [{"tenant_id": r.tenant_id, "spent_usd": from_nanos(r.settled_nano_usd),
             "reserved_usd": from_nanos(r.reserved_nano_usd),
             "daily_spend_limit_usd": limits.get(r.tenant_id)} for r in rows]
