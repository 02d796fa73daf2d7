"""Reads behind the API and the staff dashboard: trends, recent events, summaries and the
per-domain table.

Every query is bounded by an index that leads with the tenant: a trend is "the latest N by
occurred_at" (ORDER BY occurred_at DESC, id DESC LIMIT N, a backward index scan), the summary
reads the per-key counts and the per-domain table the trend snapshots, so none of them grows
with the tenant's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from django.db import connections
from django.db.models import Case, Count, F, IntegerField, Max, QuerySet, Sum, Value, When, Window

from agent33.tenancy.models import Tenant

from .choices import METRIC_TYPES, TrendDirection
from .models import (
    ANY,
    OutcomeCount,
    OutcomeEvent,
    OutcomeRollup,
    OutcomeTrendSnapshot,
    RollupSpan,
)
from .rollups import BucketStats, rollups_read
from .series import SeriesError, boundaries, previous_boundaries
from .trends import TrendStats, compute_trend
from .validation import RESERVED_DOMAIN

__all__ = [
    "ALL_DOMAINS",
    "DEFAULT_DOMAINS_LIMIT",
    "DEFAULT_RECENT_LIMIT",
    "DEFAULT_WINDOW",
    "MAX_DOMAINS_LIMIT",
    "MAX_RECENT_LIMIT",
    "MAX_WINDOW",
    "Dashboard",
    "DomainRow",
    "DomainTrend",
    "Series",
    "SeriesPeriod",
    "Summary",
    "Trend",
    "dashboard_get",
    "domain_rows_list",
    "domains_list",
    "event_type_trend_stats_many",
    "recent_events_list",
    "series_get",
    "summary_get",
    "trend_get",
    "trend_stats_many",
]

ALL_DOMAINS = RESERVED_DOMAIN  # "all": every domain, never a domain of its own
DEFAULT_WINDOW = 20
MAX_WINDOW = 1000
DEFAULT_RECENT_LIMIT = 10
MAX_RECENT_LIMIT = 100
DEFAULT_DOMAINS_LIMIT = 50
MAX_DOMAINS_LIMIT = 500


@dataclass(frozen=True)
class Trend:
    metric_type: str
    domain: str  # ALL_DOMAINS when not filtered
    window: int
    stats: TrendStats
    points: list[tuple[datetime, float]]  # oldest first
    event_type: str | None = None  # one event type's (a test's) trend
    # Open improvement intakes that declines of this metric opened (for its domain, or for
    # every domain of the "all" trend), newest knowledge from operations.
    intakes: tuple[dict[str, str], ...] = ()

    @property
    def values(self) -> list[float]:
        return [value for _, value in self.points]

    @property
    def direction(self) -> str:
        return self.stats.direction

    @property
    def sample_size(self) -> int:
        return self.stats.sample_size

    @property
    def previous_avg(self) -> float:
        return self.stats.previous_avg

    @property
    def current_avg(self) -> float:
        return self.stats.current_avg

    @property
    def change_pct(self) -> float:
        return self.stats.change_pct


@dataclass(frozen=True)
class Summary:
    total_events: int
    domains: list[str]
    event_types: list[str]
    metric_counts: dict[str, int]


@dataclass(frozen=True)
class DomainTrend:
    direction: str
    change_pct: float
    sample_size: int


@dataclass(frozen=True)
class DomainRow:
    """One domain's trends, as decline detection last evaluated them (its window)."""

    domain: str
    trends: dict[str, DomainTrend]  # metric_type -> trend, only the metrics it has

    @property
    def declining(self) -> bool:
        return any(t.direction == TrendDirection.DECLINING for t in self.trends.values())


@dataclass(frozen=True)
class Dashboard:
    trends: list[Trend]
    recent_events: list[OutcomeEvent]
    summary: Summary
    domains: list[DomainRow] = field(default_factory=list)
    # Open intakes that declines opened, by (metric_type, domain).
    intakes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    filters: dict = field(default_factory=dict)


def _events(
    tenant: Tenant,
    *,
    domain: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    # The default manager: outside any tenant scope this fails closed, and a tenant outside
    # the caller's scope (staff) yields nothing.
    queryset = OutcomeEvent.objects.filter(tenant=tenant)
    if domain:
        queryset = queryset.filter(domain=domain)
    if since is not None:
        queryset = queryset.filter(occurred_at__gte=since)
    if until is not None:
        queryset = queryset.filter(occurred_at__lt=until)
    return queryset


def normalise_domain(domain: str | None) -> str | None:
    """'' and 'all' mean every domain (Stage 1 clients send domain=all)."""
    if domain is None:
        return None
    domain = domain.strip()
    return None if domain in ("", ALL_DOMAINS) else domain


def _latest_values(
    tenant: Tenant,
    metric_type: str,
    domain: str | None,
    window: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """(occurred_at, value) of a metric's latest `window` events, newest first: a backward
    scan of the (tenant, metric[, domain], occurred_at, id) index with a LIMIT."""
    return (
        _events(tenant, domain=domain, since=since, until=until)
        .filter(metric_type=metric_type)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", "value")[:window]
    )


def trend_get(
    *,
    tenant: Tenant,
    metric_type: str,
    domain: str | None = None,
    window: int = DEFAULT_WINDOW,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
) -> Trend:
    """The latest `window` events of a metric (one query, index scan with LIMIT). With an
    event type (and a domain): that type's latest `window` minutes, each minute's average
    (`_test_values`): a CTRF test's runs."""
    domain = normalise_domain(domain)
    if event_type:
        if not domain:
            raise ValueError("event_type needs a domain")
        latest = _event_type_values(tenant, metric_type, domain, event_type, window, since, until)
    else:
        latest = list(_latest_values(tenant, metric_type, domain, window, since, until))
    latest.reverse()  # oldest first
    return Trend(
        metric_type=metric_type,
        event_type=event_type or None,
        domain=domain or ALL_DOMAINS,
        window=window,
        stats=compute_trend([value for _, value in latest], metric_type=metric_type),
        points=latest,
    )


def _event_type_values(
    tenant: Tenant,
    metric_type: str,
    domain: str,
    event_type: str,
    window: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[tuple[datetime, float]]:
    """(minute, average) of one event type's latest `window` minutes with events, newest
    first: a backward read of its minute rollups (the rollups' unique index), so a domain
    with thousands of tests costs each test its own rows only. A CTRF report is one run at
    one time, so a test's minutes are its runs."""
    rows = OutcomeRollup.objects.filter(
        tenant=tenant, metric_type=metric_type, domain=domain, event_type=event_type,
        span=RollupSpan.MINUTE,
    )
    if since is not None:
        rows = rows.filter(bucket_start__gte=since)
    if until is not None:
        rows = rows.filter(bucket_start__lt=until)
    return [
        (start, total / count)
        for start, total, count in rows.order_by("-bucket_start").values_list(
            "bucket_start", "total", "count")[:window]
    ]


def event_type_trend_stats_many(
    *, tenant: Tenant, keys: Sequence[tuple[str, str, str]], window: int = DEFAULT_WINDOW
) -> dict[tuple[str, str, str], TrendStats]:
    """The trend statistics of several (metric_type, domain, event_type) keys, each over its
    latest `window` minutes (`_test_values`, as `trend_get` with an event type reads them):
    decline detection per CTRF test. One query per key: a key costs `window` index
    entries, however many tests its domain has."""
    return {
        key: compute_trend(
            [value for _, value in _event_type_values(tenant, *key, window)][::-1],
            metric_type=key[0],
        )
        for key in keys
    }


# Keys per statement of decline detection's batched read on PostgreSQL.
_TREND_BATCH = 1_000


def trend_stats_many(
    *, tenant: Tenant, keys: Sequence[tuple[str, str]], window: int = DEFAULT_WINDOW
) -> dict[tuple[str, str], TrendStats]:
    """The trend statistics of several (metric_type, domain) keys (decline detection's read),
    each from its latest `window` values as `trend_get` reads them (a test compares the two).

    A bulk may touch 10,000 distinct keys, so on PostgreSQL the keys are read in batches of
    1,000, one statement each (`_latest_values_batch`); elsewhere (the embedded SQLite, where
    a query is a function call) one ORM query per key."""
    keys = list(keys)
    if connections[OutcomeEvent.objects.db].vendor == "postgresql":
        values: dict[tuple[str, str], list[float]] = {}
        for start in range(0, len(keys), _TREND_BATCH):
            values |= _latest_values_batch(tenant, keys[start : start + _TREND_BATCH], window)
    else:
        values = {
            (metric_type, domain): [
                value for _, value in _latest_values(tenant, metric_type, domain, window)
            ][::-1]
            for metric_type, domain in keys
        }
    return {
        (metric_type, domain): compute_trend(values.get((metric_type, domain), []),
                                             metric_type=metric_type)
        for metric_type, domain in keys
    }


def _latest_values_batch(
    tenant: Tenant, keys: Sequence[tuple[str, str]], window: int
) -> dict[tuple[str, str], list[float]]:
    """Each key's latest `window` values, oldest first, in ONE PostgreSQL statement: the keys
    as two arrays, and per key a LATERAL read of the (tenant, metric, domain, occurred_at, id)
    index, backwards, with a LIMIT, so the cost is `window` index entries per key however
    long a key's history. Hand-written because the ORM has no LATERAL; it is what keeps a
    bulk of 10,000 distinct keys from costing 10,000 round trips (bench/noisy_neighbour.py:
    all-distinct vs one-key bulk). The tenant is the caller's, as the ORM read's would be."""
    connection = connections[OutcomeEvent.objects.db]
    quote = connection.ops.quote_name
    meta = OutcomeEvent._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    sql = (
        "SELECT k.i, e.value FROM unnest(%s::text[], %s::text[]) "  # noqa: S608
        "WITH ORDINALITY AS k(metric_type, domain, i) "
        f"CROSS JOIN LATERAL (SELECT {column('value')} AS value, {column('occurred_at')} AS t, "
        f"{column('id')} AS id FROM {quote(meta.db_table)} "
        f"WHERE {column('tenant')} = %s AND {column('metric_type')} = k.metric_type "
        f"AND {column('domain')} = k.domain "
        f"ORDER BY {column('occurred_at')} DESC, {column('id')} DESC LIMIT %s) e "
        "ORDER BY k.i, e.t, e.id"
    )
    params = [[metric for metric, _ in keys], [domain for _, domain in keys], tenant.pk, window]
    values: dict[tuple[str, str], list[float]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for index, value in cursor.fetchall():
            values.setdefault(keys[index - 1], []).append(value)
    return values


def recent_events_list(
    *,
    tenant: Tenant,
    domain: str | None = None,
    limit: int = DEFAULT_RECENT_LIMIT,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[OutcomeEvent]:
    return list(
        _events(tenant, domain=normalise_domain(domain), since=since, until=until).order_by(
            "-occurred_at", "-id"
        )[:limit]
    )


def _summary_from_rows(rows: Sequence[tuple[str, str, str, int]]) -> Summary:
    metric_counts = dict.fromkeys(METRIC_TYPES, 0)
    domains: set[str] = set()
    event_types: set[str] = set()
    total = 0
    for metric_type, domain, event_type, count in rows:
        if not count:
            continue
        total += count
        metric_counts[metric_type] = metric_counts.get(metric_type, 0) + count
        domains.add(domain)
        event_types.add(event_type)
    return Summary(total, sorted(domains), sorted(event_types), metric_counts)


def summary_get(
    *,
    tenant: Tenant,
    domain: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Summary:
    """Totals per metric, domains and event types. Without a date range it reads the
    per-key counts (rows per distinct key, not per event); with one, it aggregates the
    events in that range (an index range scan)."""
    domain = normalise_domain(domain)
    if since is None and until is None:
        counts = OutcomeCount.objects.filter(tenant=tenant)
        if domain:
            counts = counts.filter(domain=domain)
        rows = counts.values_list("metric_type", "domain", "event_type", "count")
    else:
        rows = (
            _events(tenant, domain=domain, since=since, until=until)
            .order_by()
            .values("metric_type", "domain", "event_type")
            .annotate(n=Count("id"))
            .values_list("metric_type", "domain", "event_type", "n")
        )
    return _summary_from_rows(list(rows))


def domains_list(*, tenant: Tenant) -> list[str]:
    """Every domain the tenant has recorded (from the counts: no scan of the events)."""
    return sorted(
        set(
            OutcomeCount.objects.filter(tenant=tenant, count__gt=0).values_list(
                "domain", flat=True
            )
        )
    )


def domain_rows_list(
    *, tenant: Tenant, domain: str | None = None, limit: int = DEFAULT_DOMAINS_LIMIT
) -> list[DomainRow]:
    """Up to `limit` domains with their trends from the trend snapshots: domains with a
    declining metric first, then by event count (most first), then by name.

    One query over the tenant's snapshots (a few rows per domain, never its events): window
    aggregates rank each domain, and a domain has at most one row per metric, so the first
    `limit` domains are within the first `limit x metrics` rows.
    """
    declining = Case(
        When(direction=TrendDirection.DECLINING, then=Value(1)),
        default=Value(0),
        output_field=IntegerField(),
    )
    per_domain = {"partition_by": [F("domain")]}
    snapshots = OutcomeTrendSnapshot.objects.filter(tenant=tenant)
    domain = normalise_domain(domain)
    if domain:
        snapshots = snapshots.filter(domain=domain)
    rows = (
        snapshots.annotate(
            domain_declining=Window(Max(declining), **per_domain),
            domain_events=Window(Sum("event_count"), **per_domain),
        )
        .order_by("-domain_declining", "-domain_events", "domain", "metric_type")
        .values_list("domain", "metric_type", "direction", "change_pct", "sample_size")
    )[: limit * len(METRIC_TYPES)]
    trends_by_domain: dict[str, dict[str, DomainTrend]] = {}
    for name, metric_type, direction, change_pct, sample_size in rows:
        trends_by_domain.setdefault(name, {})[metric_type] = DomainTrend(
            direction, change_pct, sample_size
        )
    order = {metric: index for index, metric in enumerate(METRIC_TYPES)}
    return [
        DomainRow(name, dict(sorted(trends.items(), key=lambda item: order[item[0]])))
        for name, trends in list(trends_by_domain.items())[:limit]
    ]


def dashboard_get(
    *,
    tenant: Tenant,
    domain: str | None = None,
    window: int = DEFAULT_WINDOW,
    recent_limit: int = DEFAULT_RECENT_LIMIT,
    metric_types: Sequence[str] = METRIC_TYPES,
    since: datetime | None = None,
    until: datetime | None = None,
    domains_limit: int = DEFAULT_DOMAINS_LIMIT,
) -> Dashboard:
    """One trend per metric, the recent events, the summary, the per-domain table and the
    intakes declines opened: len(metric_types) + 4 queries, whatever the amount of data.
    The per-domain table is decline detection's view (its window, all dates)."""
    from operations.selectors import decline_intakes_open  # the apps' public seam

    intakes = decline_intakes_open(tenant_id=tenant.pk)
    trends = [
        trend_get(
            tenant=tenant,
            metric_type=metric_type,
            domain=domain,
            window=window,
            since=since,
            until=until,
        )
        for metric_type in metric_types
    ]
    trends = [
        replace(
            trend,
            intakes=tuple(
                {"domain": domain, **intake}
                for (metric_type, domain), intake in sorted(intakes.items())
                if metric_type == trend.metric_type
                and trend.domain in (ALL_DOMAINS, domain)
            ),
        )
        for trend in trends
    ]
    return Dashboard(
        trends=trends,
        recent_events=recent_events_list(
            tenant=tenant, domain=domain, limit=recent_limit, since=since, until=until
        ),
        summary=summary_get(tenant=tenant, domain=domain, since=since, until=until),
        domains=domain_rows_list(tenant=tenant, domain=domain, limit=domains_limit),
        intakes=intakes,
        filters={"domain": normalise_domain(domain) or ALL_DOMAINS, "window": window},
    )


# --- series over time (DESIGN §8.6) ---------------------------------------------------------


@dataclass(frozen=True)
class SeriesPeriod:
    boundaries: list[int]  # epoch seconds: each bucket's start, then the last one's end
    buckets: list[BucketStats]
    summary: BucketStats  # the whole period as one bucket


@dataclass(frozen=True)
class Series:
    metric_type: str
    domain: str  # ALL_DOMAINS when not filtered
    event_type: str | None
    bucket: str
    tz: ZoneInfo
    current: SeriesPeriod
    previous: SeriesPeriod | None


def series_get(
    *,
    tenant: Tenant,
    metric_type: str,
    bucket: str,
    tz: ZoneInfo,
    end: datetime,
    start: datetime | None = None,
    domain: str | None = None,
    event_type: str | None = None,
    compare_previous: bool = False,
) -> Series:
    """A metric per bucket over [start, end) (every bucket overlapping it, empty ones
    included), from the rollups only: one query per period over the rows of its buckets
    (outcomes.rollups.cover), whatever the tenant's history. Raises series.SeriesError."""
    domain = normalise_domain(domain)
    if event_type and not domain:
        # Rollups are kept per (metric, domain, event type), per domain and per metric: an
        # event type across every domain has no rows of its own.
        raise SeriesError("event_type", "Name the domain too: a series by event type is kept "
                          "per domain.")
    key = (metric_type, domain or ANY, event_type or ANY)
    edges = boundaries(bucket, tz, start=start, end=end)

    def period(edges: list[int]) -> SeriesPeriod:
        buckets, summary = rollups_read(tenant=tenant, key=key, boundaries=edges)
        return SeriesPeriod(edges, buckets, summary)

    return Series(
        metric_type=metric_type,
        domain=domain or ALL_DOMAINS,
        event_type=event_type or None,
        bucket=bucket,
        tz=tz,
        current=period(edges),
        previous=period(previous_boundaries(bucket, tz, edges)) if compare_previous else None,
    )
