"""CTRF test reports as outcome events (DESIGN §7.3).

A CI job's CTRF report (Common Test Report Format: `results.tool`, `results.summary`,
`results.tests[]`) becomes, for every passed or failed test, one `success_rate` event (1 or 0)
and one `latency_ms` event (the test's duration), both with event_type = the test's identity,
its `suite` path and `name` (`api > slow`), in domain `benchmarks.<tool name>` unless the
caller names another. Skipped, pending and other tests record nothing. The events go in
through `event_record_bulk`: one bulk insert, all or nothing, with decline detection per test,
so a test that starts failing or slows down opens one improvement intake that names it,
wherever the report lists it.

A report that breaks the CTRF schema's required fields or types is refused with a
ValidationError naming the JSON path of the first problem (`results.tests[3].status`), and
nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError

from agent33.tenancy.models import Tenant

from .choices import MetricType
from .models import MAX_LABEL_LENGTH, MAX_METADATA_BYTES
from .services import event_record_bulk
from .validation import MAX_ABS_VALUE, MAX_BULK_EVENTS, EventInvalid, clean_event, encodable

__all__ = [
    "DOMAIN_PREFIX",
    "MAX_RECORDED_TESTS",
    "CtrfIngested",
    "ctrf_ingest",
]

DOMAIN_PREFIX = "benchmarks."
STATUSES = ("passed", "failed", "skipped", "pending", "other")
SUCCESS_VALUES = {"passed": 1.0, "failed": 0.0}  # the statuses that record events
MAX_RECORDED_TESTS = MAX_BULK_EVENTS // 2  # two events per test, one bulk insert
SUMMARY_COUNTS = ("tests", "passed", "failed", "skipped", "pending", "other")
MAX_NAME_CHARS = 4_096  # a longer name is kept whole in metadata only up to this
# The whole identity (suite path and name) kept in metadata when the event type is cut:
# bounded, so what is left of the metadata limit is the test's `extra`'s own.
MAX_IDENTITY_BYTES = 8_192
SUITE_SEPARATOR = " > "
MAX_ENVIRONMENT_CHARS = 255  # commit and branch
_SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_MISSING = object()


@dataclass(frozen=True)
class CtrfIngested:
    created: int  # events stored
    domain: str


def _invalid(path: str, message: str) -> ValidationError:
    return ValidationError({path: [message]})


def _get(parent: Mapping, key: str) -> Any:
    return parent.get(key, _MISSING)


def _object(value: Any, path: str) -> Mapping:
    if value is _MISSING:
        raise _invalid(path, "This field is required.")
    if not isinstance(value, Mapping):
        raise _invalid(path, "Must be a JSON object.")
    return value


def _integer(value: Any, path: str) -> int:
    if value is _MISSING:
        raise _invalid(path, "This field is required.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path, "Must be an integer.")
    if value < 0:
        raise _invalid(path, "Must not be negative.")
    if value > MAX_ABS_VALUE:
        raise _invalid(path, f"Out of range: a finite number of at most {MAX_ABS_VALUE:g} ms.")
    return value


def _string(value: Any, path: str, *, max_chars: int) -> str:
    if not isinstance(value, str):
        raise _invalid(path, "Must be a string.")
    if len(value) > max_chars:
        raise _invalid(path, f"At most {max_chars} characters (got {len(value)}).")
    if "\x00" in value or not encodable(value):
        # PostgreSQL stores neither NUL nor lone surrogates (JSON escapes can carry both).
        raise _invalid(path, "Contains characters that cannot be stored (NUL or lone surrogates).")
    return value


def _duration(value: Any, path: str) -> float:
    if value is _MISSING:
        raise _invalid(path, "This field is required.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(path, "Must be a number of milliseconds.")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(path, "Must be a finite number (not NaN or ±Infinity).")
    if value < 0:
        raise _invalid(path, "Must not be negative.")
    if value > MAX_ABS_VALUE:
        raise _invalid(path, f"Out of range: a finite number of at most {MAX_ABS_VALUE:g} ms.")
    return value


def _suite(value: Any, path: str) -> list[str]:
    """CTRF's `suite`: the path of suites holding the test, an array of names (older
    reporters send one string)."""
    if value is _MISSING or value is None:
        return []
    parts = [value] if isinstance(value, str) else value
    if not isinstance(parts, list):
        raise _invalid(path, "Must be a string or an array of strings.")
    names = []
    for index, part in enumerate(parts):
        where = path if isinstance(value, str) else f"{path}[{index}]"
        names.append(_string(part, where, max_chars=MAX_NAME_CHARS).strip())
    return [name for name in names if name]


def _identity(suite: list[str], name: str, path: str) -> str:
    """`suite > ... > name`: what a test is across reports, whatever their order."""
    identity = SUITE_SEPARATOR.join([*suite, name.strip()])
    size = len(identity.encode("utf-8"))
    if size > MAX_IDENTITY_BYTES:
        name_size = len(name.strip().encode("utf-8"))
        where = f"{path}.name" if name_size > MAX_IDENTITY_BYTES or not suite else (
            f"{path}.suite")
        raise _invalid(where, f"The test's suite path and name take at most "
                              f"{MAX_IDENTITY_BYTES} bytes as UTF-8 (got {size}).")
    return identity


def _event_type(name: str) -> str:
    """The test's identity as an event type. Identities longer than an event type may be
    (pytest node ids with parameters get there) are cut, with a hash of the whole so that
    two long names sharing a beginning stay two event types; metadata keeps the whole."""
    name = name.strip()
    if len(name) <= MAX_LABEL_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return f"{name[: MAX_LABEL_LENGTH - 13]}~{digest}"


def _domain(domain: str, path: str) -> str:
    """Checked exactly as an event's domain is (length, blank, NUL, lone surrogates)."""
    probe = {"domain": domain, "event_type": "ctrf", "metric_type": "success_rate", "value": 0}
    try:
        return clean_event(probe).domain
    except EventInvalid as exc:
        problem = exc.errors["domain"][0]
        if path != "domain":  # the default domain, made from the tool's name
            problem = f"Makes the domain {DOMAIN_PREFIX}<tool name>, which is invalid: {problem}"
        raise _invalid(path, problem) from None


def _started_at(summary: Mapping) -> datetime:
    start = _integer(_get(summary, "start"), "results.summary.start")
    try:
        return datetime.fromtimestamp(start / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _invalid(
            "results.summary.start", "Out of range for milliseconds since the Unix epoch."
        ) from None


def _environment(results: Mapping) -> dict[str, str]:
    """The report's commit and branch (CTRF `environment.commit` / `branchName`)."""
    environment = _get(results, "environment")
    if environment is _MISSING or environment is None:
        return {}
    environment = _object(environment, "results.environment")
    kept = {}
    for field, key in (("commit", "commit"), ("branchName", "branch")):
        value = _get(environment, field)
        if value is not _MISSING and value is not None:
            kept[key] = _string(
                value, f"results.environment.{field}", max_chars=MAX_ENVIRONMENT_CHARS
            )
    return kept


@dataclass(frozen=True)
class _Recorded:
    index: int  # in results.tests
    event_type: str
    status: str
    duration_ms: float
    metadata: dict


def _recorded_tests(tests: Any, environment: dict[str, str]) -> list[_Recorded]:
    if tests is _MISSING:
        raise _invalid("results.tests", "This field is required.")
    if not isinstance(tests, list):
        raise _invalid("results.tests", "Must be a JSON array of tests.")
    recorded = []
    for index, test in enumerate(tests):
        path = f"results.tests[{index}]"
        test = _object(test, path)
        name = _get(test, "name")
        if name is _MISSING:
            raise _invalid(f"{path}.name", "This field is required.")
        name = _string(name, f"{path}.name", max_chars=MAX_NAME_CHARS)
        if not name.strip():
            raise _invalid(f"{path}.name", "May not be blank.")
        status = _get(test, "status")
        if status is _MISSING:
            raise _invalid(f"{path}.status", "This field is required.")
        if not isinstance(status, str) or status not in STATUSES:
            shown = status if isinstance(status, str) else type(status).__name__
            raise _invalid(
                f"{path}.status",
                f"Must be one of {', '.join(STATUSES)} (got {str(shown)[:50]!r}).",
            )
        duration = _duration(_get(test, "duration"), f"{path}.duration")
        identity = _identity(_suite(_get(test, "suite"), f"{path}.suite"), name, path)
        extra = _get(test, "extra")
        if extra is not _MISSING and extra is not None:
            extra = _object(extra, f"{path}.extra")
        if status not in SUCCESS_VALUES:
            continue
        event_type = _event_type(identity)
        metadata: dict[str, Any] = dict(environment)
        if extra is not _MISSING and extra is not None:
            metadata["extra"] = extra
        if event_type != identity:
            metadata["test_name"] = identity
        _check_metadata_size(metadata, f"{path}.extra")
        recorded.append(_Recorded(index, event_type, status, duration, metadata))
    if len(recorded) > MAX_RECORDED_TESTS:
        raise _invalid(
            "results.tests",
            f"At most {MAX_RECORDED_TESTS} passed or failed tests per report "
            f"({MAX_BULK_EVENTS} events; got {len(recorded)}). Split the report.",
        )
    return recorded


def _check_header(report: Any) -> Mapping:
    if not isinstance(report, Mapping):
        raise ValidationError({"non_field_errors": ["A CTRF report must be a JSON object."]})
    # Required by the current CTRF schema, absent from older reporters' output: checked when
    # present, so reports of either generation go in.
    report_format = _get(report, "reportFormat")
    if report_format is not _MISSING and report_format != "CTRF":
        raise _invalid("reportFormat", 'Must be "CTRF".')
    spec_version = _get(report, "specVersion")
    if spec_version is not _MISSING and (
        not isinstance(spec_version, str) or not _SEMVER.match(spec_version)
    ):
        raise _invalid("specVersion", "Must be a version such as 1.0.0.")
    return _object(_get(report, "results"), "results")


def _events_for(
    recorded: list[_Recorded], *, domain: str, occurred_at: datetime
) -> tuple[list[dict], list[int]]:
    """The events, and for each the index of the test it came from (for error paths).

    Every event of a report takes the report's start time: a trend orders events by time,
    then by their order here. Failed tests go after passed ones, so a report's failures
    land in a trend's newer half whatever their place in the report; latency goes slowest
    first, so that differences between the tests of one report never read as a slowdown.
    """
    successes = sorted(recorded, key=lambda test: test.status == "failed")
    latencies = sorted(recorded, key=lambda test: -test.duration_ms)
    events, sources = [], []
    for metric_type, tests in (
        (MetricType.SUCCESS_RATE, successes),
        (MetricType.LATENCY_MS, latencies),
    ):
        for test in tests:
            value = (
                SUCCESS_VALUES[test.status]
                if metric_type == MetricType.SUCCESS_RATE
                else test.duration_ms
            )
            events.append(
                {
                    "domain": domain,
                    "event_type": test.event_type,
                    "metric_type": metric_type.value,
                    "value": value,
                    "occurred_at": occurred_at,
                    "metadata": test.metadata,
                }
            )
            sources.append(test.index)
    return events, sources


_EVENT_FIELD_PATHS = {
    "event_type": "name",
    "value": "duration",
    "metadata": "extra",
}


def _check_metadata_size(metadata: dict, extra_path: str) -> None:
    """The identity and the environment are bounded (MAX_IDENTITY_BYTES, 255-character
    commit and branch), so metadata over its limit is always the test's `extra`: say how
    much room it had, not the metadata's limit, which the caller never sent."""
    if "extra" not in metadata:
        return
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= MAX_METADATA_BYTES:
        return
    extra = len(json.dumps(metadata["extra"], ensure_ascii=False,
                           separators=(",", ":")).encode())
    room = MAX_METADATA_BYTES - (size - extra)
    raise _invalid(extra_path, f"At most {room} bytes as JSON for this test (its events' "
                               f"metadata, {MAX_METADATA_BYTES} bytes, also holds its name "
                               f"and the report's commit and branch); got {extra}.")


def _report_path(key: str, sources: list[int], domain_path: str) -> str:
    """`events.12.event_type` (the bulk validator's name) → `results.tests[7].name`."""
    parts = key.split(".", 2)
    if len(parts) != 3 or parts[0] != "events" or not parts[1].isdigit():
        return "results.tests"
    index, field = int(parts[1]), parts[2]
    if field == "domain":
        return domain_path
    if field == "occurred_at":
        return "results.summary.start"
    test_path = f"results.tests[{sources[index]}]"
    return f"{test_path}.{_EVENT_FIELD_PATHS[field]}" if field in _EVENT_FIELD_PATHS else test_path


def ctrf_ingest(
    *, tenant: Tenant, report: Any, domain: str | None = None, metered: bool = False
) -> CtrfIngested:
    """Record a CTRF report's passed and failed tests as outcome events, all or nothing.

    `domain` defaults to `benchmarks.<results.tool.name>`. Raises ValidationError naming the
    JSON path of the first problem; nothing is stored then. `metered`: the events count
    against the tenant's per-minute allowance once valid (the API; an operator's command is
    not).
    """
    results = _check_header(report)
    tool = _object(_get(results, "tool"), "results.tool")
    tool_name = _get(tool, "name")
    if tool_name is _MISSING:
        raise _invalid("results.tool.name", "This field is required.")
    tool_name = _string(tool_name, "results.tool.name", max_chars=MAX_LABEL_LENGTH)
    if not tool_name.strip():
        raise _invalid("results.tool.name", "May not be blank.")
    summary = _object(_get(results, "summary"), "results.summary")
    for count in SUMMARY_COUNTS:
        _integer(_get(summary, count), f"results.summary.{count}")
    _integer(_get(summary, "stop"), "results.summary.stop")
    occurred_at = _started_at(summary)
    if domain is None:
        domain_path, domain = "results.tool.name", f"{DOMAIN_PREFIX}{tool_name.strip()}"
    else:
        domain_path = "domain"
    domain = _domain(domain, domain_path)
    recorded = _recorded_tests(_get(results, "tests"), _environment(results))
    if not recorded:
        return CtrfIngested(created=0, domain=domain)
    events, sources = _events_for(recorded, domain=domain, occurred_at=occurred_at)
    try:
        created = event_record_bulk(tenant=tenant, events=events, metered=metered,
                                    trends_per_event_type=True)
    except ValidationError as exc:
        # The bulk validator names events by index; the caller sent tests.
        raise ValidationError(
            {
                _report_path(key, sources, domain_path): messages
                for key, messages in exc.message_dict.items()
            }
        ) from None
    return CtrfIngested(created=created, domain=domain)
