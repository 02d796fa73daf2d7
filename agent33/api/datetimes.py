"""Date-times from clients, made storable: the one rule for query filters, query parameters
and body fields.

A time is accepted in ISO 8601 with any offset Python can represent (years 1-9999; a time
without an offset is UTC) and converted to UTC before any query sees it. Two things would
otherwise escape as a 500:

- an offset PostgreSQL refuses (it takes at most ±15:59; `2026-07-10T21:03:30-19:54` is
  "time zone displacement out of range" there), sent as-is when the value keeps its offset;
- a time that leaves Python's range once in UTC (`0001-01-01T00:00:00+05:00`,
  `9999-12-31T23:59:59-10:00`): OverflowError when SQLite's adapter or a comparison
  converts it.

In UTC, every remaining value fits PostgreSQL's `timestamptz` and SQLite's text form.
"""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_datetime
from django_filters.fields import IsoDateTimeField
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

__all__ = [
    "OUT_OF_RANGE",
    "UtcDateTimeField",
    "UtcDateTimeFilter",
    "parse_utc_datetime",
    "parse_utc_datetime_param",
    "parse_utc_query_datetime",
    "to_utc",
]

OUT_OF_RANGE = (
    "Out of range: the time must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z "
    "once converted to UTC."
)
EXAMPLE = "2026-01-31T12:00:00Z"


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive means UTC); ValueError(OUT_OF_RANGE) when UTC cannot hold it."""
    try:
        if moment.tzinfo is None or moment.utcoffset() is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(OUT_OF_RANGE) from None


def parse_utc_datetime(text: str) -> datetime:
    """ISO 8601 text → an aware UTC datetime; ValueError with a message for people."""
    try:
        moment = parse_datetime(text.strip())
    except ValueError:  # well-formed but impossible, e.g. month 13
        moment = None
    if moment is None:
        raise ValueError(f"Not an ISO 8601 date-time (e.g. {EXAMPLE}).")
    return to_utc(moment)


def parse_utc_query_datetime(raw: str) -> datetime:
    """parse_utc_datetime for a query string, where an unescaped `+01:00` arrives as
    ` 01:00`: a space is read as the plus it stood for."""
    try:
        return parse_utc_datetime(raw)
    except ValueError:
        if " " not in raw.strip():
            raise
    return parse_utc_datetime(raw.replace(" ", "+"))


def parse_utc_datetime_param(raw: str, *, field: str) -> datetime:
    """A query parameter's date-time, or a 400 naming `field`."""
    try:
        return parse_utc_query_datetime(raw)
    except ValueError as exc:
        raise ValidationError({field: [str(exc)]}) from None


class UtcDateTimeField(serializers.DateTimeField):
    """Body fields: DRF's date-time field, always converted to UTC with one range message."""

    def enforce_timezone(self, value: datetime) -> datetime:
        try:
            return to_utc(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from None


class _UtcIsoDateTimeFormField(IsoDateTimeField):
    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return to_utc(moment)
        except ValueError as exc:
            raise DjangoValidationError(str(exc), code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """Query filters (django-filter): ISO 8601, compared in UTC, out-of-range values a 400
    naming the filter."""

    field_class = _UtcIsoDateTimeFormField
