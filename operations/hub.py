"""The Operations Hub is built from *process sources*.

A process source is one kind of process (traces, budgets, ... multimodal requests) seen
through a small interface: list recent processes, read one, control one. Each app registers
its sources at start-up (`AppConfig.ready()`):

    from operations.hub import register_process_source
    register_process_source(MyRequestSource())

so `operations` never imports another app's models; it only knows the interface. A source's
ids carry its prefix (`mmreq-...`), which is how `/processes/{id}` finds the source.

Contract for implementers (see `ModelProcessSource` in operations/sources.py for an example):
- `list(scope=, since=, statuses=, limit=)` runs ONE query through the model's tenant-scoped
  default manager (the hub runs with the caller's tenant scope set; `scope` is that same value
  — a Tenant, a TenantSet or ALL_TENANTS — for sources that read outside the ORM) and returns
  at most `limit` ProcessRows with `status in statuses` and `started_at >= since`, newest
  first. The hub merges every source's rows, so its query count is one per source.
- `get(process_id)` returns a ProcessDetail, or None when absent or another tenant's (404).
- `control(process_id, action=, reason=, origin=)` applies the action through the same
  service as the type's own API (one rule set), which changes the status through
  `operations.transitions.apply_status_changes` (race-safe, with its history row), and
  returns the process's detail after the change. Raise `agent33.errors.NotFound` when
  absent, `StateConflict` when the type does not support the action or the current state
  forbids it (detail says why), `Forbidden` when the origin lacks the right.
- Optional, for batches (operations/batches.py): `matching(since=, statuses=)` returns the
  tenant-scoped QuerySet `list` reads from (no order, no limit), so a batch counts and
  snapshots exactly what the hub's filter means; a source without it is never in a batch.
  `control_many(pks, action=, reason=, origin=)` controls many at once through
  `apply_status_changes` (returning its `StatusChanges`); without it a batch calls `control`
  once per process (multimodal requests: their API's cancel).
- Each ProcessRow carries `allowed_actions`: the controls that would change that process
  now, read from the type's state machine and the rules the control's service applies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "HUB_INCLUDES",
    "AttentionItem",
    "ProcessDetail",
    "ProcessRow",
    "ProcessSource",
    "attention_items",
    "hub_panels",
    "iso",
    "known_includes",
    "register_attention_item",
    "register_hub_panel",
    "register_process_source",
    "registered_sources",
    "source_for_id",
    "sources_for_includes",
    "unregister_process_source",
]

# The include values of the hub contract (DESIGN §5.1). They are accepted even when nothing is
# registered under them yet (a deployment without the multimodal app lists no such rows).
HUB_INCLUDES: tuple[str, ...] = ("traces", "budgets", "improvements", "workflows", "multimodal")


def iso(value: datetime | None) -> str | None:
    """The API's timestamp format (ISO 8601, UTC as `Z`), for JSON-ready rows."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass(frozen=True)
class ProcessRow:
    id: str
    type: str
    status: str
    started_at: datetime
    name: str
    metadata: dict[str, Any]  # JSON-ready; always carries "tenant_id"
    allowed_actions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "started_at": iso(self.started_at),
            "name": self.name,
            "metadata": self.metadata,
            "allowed_actions": list(self.allowed_actions),
        }


@dataclass(frozen=True)
class ProcessDetail:
    row: ProcessRow
    tenant_id: str
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-ready type-specific fields


@runtime_checkable
class ProcessSource(Protocol):
    type_name: str  # the hub's `type`, e.g. "workflow"
    include_key: str  # the `include` value selecting it, e.g. "workflows"
    id_prefix: str  # e.g. "wfrun-"
    statuses: tuple[str, ...]  # every status the type can have
    active_statuses: tuple[str, ...]  # "not finished": listed when no status is asked for
    actions: tuple[str, ...]  # the controls the type supports at all

    def list(
        self, *, scope: Any, since: datetime, statuses: tuple[str, ...], limit: int
    ) -> list[ProcessRow]: ...

    def get(self, process_id: str) -> ProcessDetail | None: ...

    def control(
        self, process_id: str, *, action: str, reason: str, origin: Any
    ) -> ProcessDetail: ...


_lock = threading.Lock()
_sources: dict[str, ProcessSource] = {}


def register_process_source(source: ProcessSource) -> None:
    """Register (or replace, by type name) a source. Call from AppConfig.ready()."""
    if not isinstance(source, ProcessSource):
        raise TypeError(f"{source!r} does not implement operations.hub.ProcessSource")
    with _lock:
        for other in _sources.values():
            if other.type_name != source.type_name and other.id_prefix == source.id_prefix:
                raise ValueError(
                    f"Id prefix {source.id_prefix!r} is already used by {other.type_name!r}"
                )
        _sources[source.type_name] = source


def unregister_process_source(type_name: str) -> None:
    with _lock:
        _sources.pop(type_name, None)


def registered_sources() -> list[ProcessSource]:
    with _lock:
        return list(_sources.values())


def known_includes() -> tuple[str, ...]:
    extra = sorted({s.include_key for s in registered_sources()} - set(HUB_INCLUDES))
    return HUB_INCLUDES + tuple(extra)


def sources_for_includes(includes: set[str] | None) -> list[ProcessSource]:
    sources = registered_sources()
    if includes is None:
        return sources
    return [s for s in sources if s.include_key in includes]


def source_for_id(process_id: str) -> ProcessSource | None:
    for source in registered_sources():
        if process_id.startswith(source.id_prefix):
            return source
    return None


# --- staff hub page panels --------------------------------------------------------------
# Other apps can add a panel to /admin/operations/hub/ without operations importing them:
# register_hub_panel("multimodal", render) fills the page's <section id="multimodal-panel">;
# `render(request)` returns trusted HTML (build it with format_html / a template).

_panels: dict[str, Callable[[Any], str]] = {}


def register_hub_panel(key: str, render: Callable[[Any], str]) -> None:
    with _lock:
        _panels[key] = render


def hub_panels() -> dict[str, Callable[[Any], str]]:
    with _lock:
        return dict(_panels)


# --- "Needs attention" on the staff hub page ---------------------------------------------
# What waits for a person: each app registers the counts it owns (operations: submitted
# intakes, budgets pending approval; multimodal: requests failed in the last hour).


@dataclass(frozen=True)
class AttentionItem:
    key: str  # the element id's stem on the page: "attention-<key>"
    label: str  # "Intakes waiting for triage"
    count: Callable[[], int]  # run in the staff member's tenant scope: a cheap indexed count
    list_url: Callable[[], str]  # the admin list filtered to exactly those rows


_attention: dict[str, AttentionItem] = {}


def register_attention_item(item: AttentionItem) -> None:
    with _lock:
        _attention[item.key] = item


def attention_items() -> list[AttentionItem]:
    with _lock:
        return list(_attention.values())
