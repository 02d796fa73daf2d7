"""Reads behind the Operations Hub: the same functions serve the API and the staff page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from agent33.api.datetimes import parse_utc_query_datetime
from agent33.errors import InvalidInput, NotFound
from agent33.tenancy.context import current_scope

from .hub import (
    ProcessDetail,
    iso,
    known_includes,
    registered_sources,
    source_for_id,
    sources_for_includes,
)
from .models import StatusChange

__all__ = [
    "DEFAULT_HUB_LIMIT",
    "DEFAULT_SINCE",
    "HISTORY_LIMIT",
    "HubQuery",
    "decline_intakes_open",
    "hub_snapshot",
    "parse_hub_query",
    "process_detail",
    "process_history",
]

DEFAULT_HUB_LIMIT = 100
MAX_HUB_LIMIT = 100
DEFAULT_SINCE = timedelta(hours=24)


@dataclass(frozen=True)
class HubQuery:
    includes: frozenset[str] | None  # None: every registered source
    since: datetime
    status: str | None
    limit: int


def _parse_since(raw: str, now: datetime) -> datetime:
    try:
        return parse_utc_query_datetime(raw)
    except ValueError as exc:
        problem = str(exc)
    raise InvalidInput(
        f"Invalid since value '{raw[:100]}': {problem} Use an ISO 8601 date-time such as "
        f"{iso(now.replace(microsecond=0))}.",
        field="since",
    )


def parse_hub_query(params: Mapping[str, str], *, now: datetime | None = None) -> HubQuery:
    """Validate the hub's query parameters; every bad value is a 400 naming it."""
    now = now or timezone.now()

    includes = None
    raw_include = (params.get("include") or "").strip()
    if raw_include:
        requested = {item.strip().lower() for item in raw_include.split(",") if item.strip()}
        invalid = sorted(requested - set(known_includes()))
        if invalid:
            raise InvalidInput(f"Invalid include values: {', '.join(invalid)}", field="include")
        includes = frozenset(requested) or None  # "include=," means no narrowing

    raw_since = (params.get("since") or "").strip()
    since = _parse_since(raw_since, now) if raw_since else now - DEFAULT_SINCE

    status = (params.get("status") or "").strip() or None
    if status is not None:
        known = {s for source in registered_sources() for s in source.statuses}
        if status not in known:
            raise InvalidInput(
                f"Unknown status '{status[:50]}'; use one of: {', '.join(sorted(known))}.",
                field="status",
            )

    raw_limit = (params.get("limit") or "").strip()
    limit = DEFAULT_HUB_LIMIT
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_HUB_LIMIT:
            raise InvalidInput(
                f"limit must be an integer between 1 and {MAX_HUB_LIMIT}.", field="limit"
            )
    return HubQuery(includes=includes, since=since, status=status, limit=limit)


def hub_snapshot(query: HubQuery, *, now: datetime | None = None) -> dict[str, Any]:
    """The hub in the current tenant scope: one query per included source, merged.

    Without a status, each source lists its not-finished states. `active_count` is how many
    of the listed processes are not finished (all of them unless `status` names a final one).
    """
    now = now or timezone.now()
    scope = current_scope()
    rows = []
    active_ids: set[str] = set()
    for source in sources_for_includes(query.includes):
        if query.status is None:
            statuses = tuple(source.active_statuses)
        elif query.status in source.statuses:
            statuses = (query.status,)
        else:
            continue  # this type never has that status: no query
        for row in source.list(scope=scope, since=query.since, statuses=statuses,
                               limit=query.limit):
            rows.append(row)
            if row.status in source.active_statuses:
                active_ids.add(row.id)
    rows.sort(key=lambda row: (row.started_at, row.id), reverse=True)
    rows = rows[: query.limit]
    return {
        "timestamp": iso(now),
        "active_count": sum(1 for row in rows if row.id in active_ids),
        "processes": [row.as_dict() for row in rows],
    }


# A process's detail shows its latest changes; the admin shows the whole history.
HISTORY_LIMIT = 50

_HISTORY_FIELDS = ("action", "cause", "path", "reason", "actor", "actor_name", "state_before",
                   "state_after", "request_id", "created_at")
# What `control_history` showed before every change was recorded (its deprecated alias).
_CONTROL_HISTORY_FIELDS = ("action", "reason", "actor", "state_before", "state_after",
                           "created_at")


def process_history(*, tenant_id: str, process_id: str) -> list[dict[str, Any]]:
    """The latest HISTORY_LIMIT status changes of a process, newest first. The tenant filter
    comes from the process itself, so operator reads use the (tenant, process_id,
    created_at, id) index too: one index range, however long the process's history."""
    latest = list(
        StatusChange.objects.filter(tenant_id=tenant_id, process_id=process_id)
        .order_by("-created_at", "-id")
        .values(*_HISTORY_FIELDS)[:HISTORY_LIMIT]
    )
    for entry in latest:
        entry["created_at"] = iso(entry["created_at"])
    return latest


def process_detail(process_id: str, *, known: ProcessDetail | None = None) -> dict[str, Any]:
    """GET /processes/{id}'s body. `known`: the process as the caller already has it."""
    detail = known
    if detail is None:
        source = source_for_id(process_id)
        detail = source.get(process_id) if source is not None else None
    if detail is None:
        raise NotFound(f"Process {process_id} not found.")
    history = process_history(tenant_id=detail.tenant_id, process_id=process_id)
    return {
        **detail.row.as_dict(),
        **detail.extra,
        "history": history,
        # Deprecated alias for one release: the same changes, oldest first, as it was.
        "control_history": [
            {name: entry[name] for name in _CONTROL_HISTORY_FIELDS} for entry in history[::-1]
        ],
    }


def decline_intakes_open(*, tenant_id: str) -> dict[tuple[str, str], dict[str, str]]:
    """The open intakes that declining outcome trends opened, by (metric_type, domain): the
    public read other apps (the outcomes dashboard) use to link a decline to its intake."""
    from .choices import INTAKE_DECLINE_CLOSED
    from .models import ImprovementIntake

    rows = (
        ImprovementIntake.objects.filter(tenant_id=tenant_id)
        .exclude(decline_key="")
        .exclude(status__in=INTAKE_DECLINE_CLOSED)
        .values("id", "title", "status", "urgency", "decline_key")
    )
    found: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        metric_type, _, domain = row.pop("decline_key").partition(":")
        found[(metric_type, domain)] = row
    return found
