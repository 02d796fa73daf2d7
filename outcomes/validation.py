"""One lean validator for outcome events, shared by the single and the bulk path.

A bulk request carries up to 10,000 events; a DRF serializer per item costs milliseconds
each, so events are checked here with plain type tests instead. The messages are the API's:
every failure names its field (and, in bulk, the event's index).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from agent33.api.datetimes import parse_utc_datetime, to_utc

from .choices import METRIC_TYPES
from .models import MAX_LABEL_LENGTH, MAX_METADATA_BYTES

__all__ = [
    "MAX_BULK_EVENTS",
    "MAX_METADATA_DEPTH",
    "RESERVED_DOMAIN",
    "CleanEvent",
    "EventInvalid",
    "clean_event",
    "clean_events",
    "encodable",
]

MAX_BULK_EVENTS = 10_000
RESERVED_DOMAIN = "all"  # what trends and the dashboard read as every domain
MAX_METADATA_DEPTH = 32
_METRICS = frozenset(METRIC_TYPES)
_METRIC_LIST = ", ".join(METRIC_TYPES)
_REQUIRED = "This field is required."

# The largest magnitude of an event's value: a rollup's sum of many stays finite.
MAX_ABS_VALUE = 1e15


@dataclass(frozen=True, slots=True)
class CleanEvent:
    domain: str
    event_type: str
    metric_type: str
    value: float
    occurred_at: dt.datetime | None  # None: "now", filled in by the service
    metadata: dict
    metadata_json: str  # compact JSON of `metadata` (its size is what the limit counts)

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "event_type": self.event_type,
            "metric_type": self.metric_type,
            "value": self.value,
            "occurred_at": self.occurred_at,
            "metadata": self.metadata,
        }


class EventInvalid(Exception):
    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def _label(raw: Any, errors: dict[str, list[str]], field: str) -> str:
    if raw is None:
        errors[field] = [_REQUIRED]
        return ""
    if not isinstance(raw, str):
        errors[field] = ["Must be a string."]
        return ""
    text = raw.strip()
    if not text:
        errors[field] = ["May not be blank."]
    elif len(text) > MAX_LABEL_LENGTH:
        errors[field] = [
            f"At most {MAX_LABEL_LENGTH} characters (got {len(text)})."
        ]
    elif "\x00" in text or (not text.isascii() and not encodable(text)):
        errors[field] = ["Contains characters that cannot be stored (NUL or lone surrogates)."]
    elif field == "domain" and text == RESERVED_DOMAIN:
        errors[field] = [f"'{RESERVED_DOMAIN}' is reserved: trends and the dashboard read it "
                         "as every domain."]
    return text


def encodable(text: str) -> bool:
    """Whether the text can be stored as UTF-8 (a JSON escape can carry a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _value(raw: Any, errors: dict[str, list[str]]) -> float:
    kind = type(raw)
    if kind is float:
        number = raw
    elif kind is int or (
        isinstance(raw, (int, float, decimal.Decimal)) and not isinstance(raw, bool)
    ):
        try:
            number = float(raw)
        except (OverflowError, ValueError):
            errors["value"] = ["Must be a finite number."]
            return 0.0
    elif raw is None:
        errors["value"] = [_REQUIRED]
        return 0.0
    elif isinstance(raw, bool):
        errors["value"] = ["Must be a number, not a boolean."]
        return 0.0
    elif isinstance(raw, str):
        errors["value"] = ["Must be a number, not a string."]
        return 0.0
    else:
        errors["value"] = ["Must be a number."]
        return 0.0
    if not math.isfinite(number):
        # 1e400 parses as inf; NaN and ±Infinity cannot be averaged or stored portably.
        errors["value"] = ["Must be a finite number (not NaN or ±Infinity)."]
    elif abs(number) > MAX_ABS_VALUE:
        # Rollups add values up: two values near the largest double overflow their sum
        # (found by fuzzing: a 500 from PostgreSQL's "value out of range").
        errors["value"] = [f"Must be between -{MAX_ABS_VALUE:g} and {MAX_ABS_VALUE:g}."]
    return number


def _occurred_at(raw: Any, errors: dict[str, list[str]]) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, dt.datetime):
            return to_utc(raw)
        if isinstance(raw, str):
            return parse_utc_datetime(raw)
    except ValueError as exc:
        errors["occurred_at"] = [str(exc)]
        return None
    errors["occurred_at"] = ["Must be an ISO 8601 date-time string."]
    return None


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _metadata(raw: Any, errors: dict[str, list[str]]) -> tuple[dict, str]:
    if raw is None:
        return {}, "{}"
    if type(raw) is not dict and not isinstance(raw, Mapping):
        errors["metadata"] = ["Must be a JSON object."]
        return {}, "{}"
    if not raw:
        return {}, "{}"
    try:
        text = _ENCODER.encode(raw)
        encoded = text.encode("utf-8")  # fails on lone surrogates, which jsonb rejects
    except (TypeError, ValueError, RecursionError):
        errors["metadata"] = ["Must contain only JSON values (finite numbers, no NaN/Infinity)."]
        return {}, "{}"
    except UnicodeEncodeError:
        errors["metadata"] = ["Strings cannot contain lone surrogates."]
        return {}, "{}"
    if len(encoded) > MAX_METADATA_BYTES:
        errors["metadata"] = [f"At most {MAX_METADATA_BYTES} bytes as JSON (got {len(encoded)})."]
        return {}, "{}"
    # The cheap tests on the text only decide whether the exact walk is needed.
    if "\\u0000" in text or text.count("{") + text.count("[") > MAX_METADATA_DEPTH:
        problem = _metadata_problem(raw)
        if problem:
            errors["metadata"] = [problem]
            return {}, "{}"
    return raw if type(raw) is dict else dict(raw), text


def _metadata_problem(root: Mapping) -> str | None:
    """NUL characters break PostgreSQL's jsonb (a 500) and deep nesting its parser's stack;
    find them without recursion."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (Mapping, list, tuple)) and depth > MAX_METADATA_DEPTH:
            return f"Nested more than {MAX_METADATA_DEPTH} levels deep."
        if isinstance(node, Mapping):
            for key, inner in node.items():
                if isinstance(key, str) and "\x00" in key:
                    return "Keys cannot contain NUL characters."
                stack.append((inner, depth + 1))
        elif isinstance(node, (list, tuple)):
            stack.extend((inner, depth + 1) for inner in node)
        elif isinstance(node, str) and "\x00" in node:
            return "Strings cannot contain NUL characters."
    return None


def clean_event(data: Any) -> CleanEvent:
    """Check one event (an API body or a service call's fields); raise EventInvalid."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventInvalid({"non_field_errors": ["Each event must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    domain = _label(data.get("domain"), errors, "domain")
    event_type = _label(data.get("event_type"), errors, "event_type")
    metric_type = data.get("metric_type")
    if metric_type is None:
        errors["metric_type"] = [_REQUIRED]
    elif not isinstance(metric_type, str) or metric_type not in _METRICS:
        shown = metric_type if isinstance(metric_type, str) else type(metric_type).__name__
        errors["metric_type"] = [
            f"Unknown metric type {str(shown)[:50]!r}; expected one of {_METRIC_LIST}."
        ]
    value = _value(data.get("value"), errors)
    occurred_at = _occurred_at(data.get("occurred_at"), errors)
    metadata, metadata_json = _metadata(data.get("metadata"), errors)
    if errors:
        raise EventInvalid(errors)
    return CleanEvent(domain, event_type, metric_type, value, occurred_at, metadata, metadata_json)


def clean_events(events: Any) -> list[CleanEvent]:
    """Check a bulk request's events, stopping at the first bad one, whose index the
    ValidationError's fields name (`events.3.value`)."""
    if not isinstance(events, (list, tuple)):
        raise ValidationError({"events": ["Must be a list of events."]})
    if not events:
        raise ValidationError({"events": ["At least one event is required."]})
    if len(events) > MAX_BULK_EVENTS:
        raise ValidationError(
            {"events": [f"At most {MAX_BULK_EVENTS} events per request (got {len(events)})."]}
        )
    cleaned = []
    append = cleaned.append
    for index, data in enumerate(events):
        try:
            append(clean_event(data))
        except EventInvalid as exc:
            raise ValidationError(
                {
                    (
                        f"events.{index}"
                        if field == "non_field_errors"
                        else f"events.{index}.{field}"
                    ): messages
                    for field, messages in exc.errors.items()
                }
            ) from None
    return cleaned
