"""Series bucket boundaries in an IANA time zone (DESIGN §8.6), pure: no database.

Minute buckets are UTC minutes (the same instants in every zone in use today). Hour buckets
start where the local clock shows a whole hour, so in +05:30 they start at :30 UTC. Day and
week buckets start at local midnight (weeks on Monday), so across a DST change a day lasts 23
or 25 hours; a midnight the clock skips (a zone that springs forward at 00:00) starts its day
at the first instant that exists. Boundaries are returned as epoch seconds rounded down to the
minute, which changes nothing for any offset in use since 1972 and rounds the historic local
mean times (offsets with seconds) to their minute, as the rollups' finest grain requires.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "BUCKETS",
    "DEFAULT_BUCKETS",
    "MAX_BUCKETS",
    "SeriesError",
    "boundaries",
    "previous_boundaries",
    "zone",
]

BUCKETS = ("minute", "hour", "day", "week")
MAX_BUCKETS = 1_000
# Buckets shown when `from` is not given.
DEFAULT_BUCKETS = {"minute": 60, "hour": 48, "day": 30, "week": 12}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SeriesError(ValueError):
    """Bad series parameters; `field` is the query parameter to name in the 400."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SeriesError(
            "tz", "Not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)."
        ) from None


def _epoch(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(minutes=1) * 60


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0: a skipped midnight resolves to the transition itself, an ambiguous one to the
    # first of its two instants.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _floor(moment: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    """The start of the bucket holding `moment` (UTC in, UTC out)."""
    if bucket == "minute":
        return moment.replace(second=0, microsecond=0)
    local = moment.astimezone(tz)
    if bucket == "hour":
        return (moment - timedelta(minutes=local.minute, seconds=local.second,
                                   microseconds=local.microsecond))
    day = local.date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    start = _local_midnight(day, tz)
    if start > moment:  # a skipped midnight resolved after the moment: the day before
        return _floor(start - timedelta(microseconds=1), bucket, tz)
    return start


def _next(start: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    if bucket == "minute":
        return start + timedelta(minutes=1)
    if bucket == "hour":
        # An absolute hour on, re-aligned: a zone whose offset changes by 30 minutes (Lord
        # Howe) moves its local whole hours.
        return _floor(start + timedelta(hours=1), "hour", tz)
    days = 7 if bucket == "week" else 1
    return _local_midnight(start.astimezone(tz).date() + timedelta(days=days), tz)


def _walk(first: datetime, bucket: str, tz: ZoneInfo, *, until: datetime | None, count: int
          ) -> list[int]:
    """Boundaries from `first`: `count` buckets, or (until given) every bucket starting
    before `until`; refuses more than MAX_BUCKETS."""
    edges = [first]
    while (len(edges) - 1 < count) if until is None else (edges[-1] < until):
        if len(edges) > MAX_BUCKETS:
            raise SeriesError(
                "bucket",
                f"More than {MAX_BUCKETS:,} {bucket} buckets in this period: choose a larger "
                "bucket or a shorter period.",
            )
        edges.append(_next(edges[-1], bucket, tz))
    return [_epoch(edge) for edge in edges]


def boundaries(
    bucket: str, tz: ZoneInfo, *, start: datetime | None, end: datetime
) -> list[int]:
    """Epoch seconds of each bucket's start, then the last one's end: every bucket that
    overlaps [start, end). Without `start`: the DEFAULT_BUCKETS buckets ending with the one
    holding `end`'s last instant."""
    if bucket not in BUCKETS:
        raise SeriesError("bucket", f"Must be one of {', '.join(BUCKETS)}.")
    try:
        if start is None:
            last = _floor(end - timedelta(microseconds=1), bucket, tz)
            first = last
            for _ in range(DEFAULT_BUCKETS[bucket] - 1):
                first = _floor(first - timedelta(microseconds=1), bucket, tz)
            return _walk(first, bucket, tz, until=None, count=DEFAULT_BUCKETS[bucket])
        if start >= end:
            raise SeriesError("to", "Must be after `from`.")
        return _walk(_floor(start, bucket, tz), bucket, tz, until=end, count=0)
    except OverflowError:
        raise SeriesError("from", "The period reaches outside the years 1-9999.") from None


def previous_boundaries(bucket: str, tz: ZoneInfo, current: list[int]) -> list[int]:
    """The same number of buckets right before `current` (compare=previous)."""
    try:
        first = _EPOCH + timedelta(seconds=current[0])
        for _ in range(len(current) - 1):
            first = _floor(first - timedelta(microseconds=1), bucket, tz)
        return _walk(first, bucket, tz, until=None, count=len(current) - 1)
    except OverflowError:
        raise SeriesError("from", "The previous period reaches before the year 1.") from None
