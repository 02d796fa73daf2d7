"""Batches: one control (pause, resume, cancel) on every process a hub filter matches
(DESIGN §8.4).

- `batch_create` counts (`dry_run`) or snapshots the matched process ids with the hub's own
  filter semantics (`parse_hub_query` and each source's `matching()`, the QuerySet the hub
  lists from), narrowed to the types that have the control and the states it starts from.
  Limits: more than MAX_BATCH_ITEMS matched → 400 `batch_too_large`; more than
  MAX_ACTIVE_BATCHES queued or running for the tenant → 429 `too_many_batches`, counted under
  a lock of the tenant's row so two concurrent creates cannot both pass.
- `batch_run` (the worker's `operations.run_batch` job) applies the control CHUNK_SIZE items
  per transaction through the sources' controls (`control_many` → `apply_status_changes`;
  multimodal requests one by one through their API's cancel), with path `batch`, the batch's
  reason, its creator as actor and cause operator. Each chunk's changes, the batch's counts
  and its `position` commit together, so progress is visible while it runs, a cancel stops it
  between chunks, and a worker killed mid-batch resumes after the last committed chunk
  without applying anything twice.
- `batch_completed` (operations.signals) is sent once, after the commit that ends a batch.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agent33 import jobs
from agent33.errors import DomainError, InvalidInput, LimitReached, NotFound, StateConflict
from agent33.tenancy.models import Tenant

from .choices import CONTROL_ACTIONS, ChangeCause, ChangePath
from .controls import clean_note
from .hub import ProcessSource, iso, source_for_id, sources_for_includes
from .models import BATCH_ACTIVE, Batch, BatchState
from .selectors import HubQuery, parse_hub_query
from .signals import batch_completed
from .transitions import Origin, kind_for_type

__all__ = [
    "CHUNK_SIZE",
    "MAX_ACTIVE_BATCHES",
    "MAX_BATCH_ITEMS",
    "MAX_ERRORS",
    "batch_as_dict",
    "batch_cancel",
    "batch_create",
    "batch_get",
    "batch_run",
    "batches_to_dicts",
]

logger = logging.getLogger("agent33.operations")

MAX_BATCH_ITEMS = 10_000
MAX_ACTIVE_BATCHES = 3
CHUNK_SIZE = 200
MAX_ERRORS = 100
FILTER_KEYS = ("include", "status", "since", "ids")
# With `ids` and no `since`, the ids choose: the hub's 24-hour default does not apply.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
JOB_NAME = "operations.run_batch"


# --- matching ---------------------------------------------------------------------------


def _parse_filter(raw: Any) -> tuple[HubQuery, frozenset[str] | None, dict[str, Any]]:
    """The batch filter → (the hub query, the ids it is narrowed to, the filter as stored).
    Every bad value is a 400 naming `filter.<key>`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput("filter must be an object.", field="filter")
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise InvalidInput(f"Unknown filter keys: {', '.join(unknown)[:200]}; use "
                           f"{', '.join(FILTER_KEYS)}.", field="filter")
    include = raw.get("include") or ""
    if isinstance(include, list) and all(isinstance(item, str) for item in include):
        include = ",".join(include)
    params: dict[str, str] = {"include": include}
    for key in ("include", "status", "since"):
        value = params.get(key, raw.get(key)) or ""
        if not isinstance(value, str) or len(value) > 1000:
            raise InvalidInput(f"filter.{key} must be a string.", field=f"filter.{key}")
        params[key] = value
    ids = raw.get("ids")
    if ids is not None:
        if (not isinstance(ids, list) or len(ids) > MAX_BATCH_ITEMS
                or not all(isinstance(pk, str) and 0 < len(pk) <= 100 for pk in ids)):
            raise InvalidInput(f"filter.ids must be a list of at most {MAX_BATCH_ITEMS} "
                               "process ids.", field="filter.ids")
        ids = frozenset(ids)
    try:
        query = parse_hub_query(params)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field=f"filter.{exc.field}" if exc.field else "filter"
                           ) from None
    if ids is not None and not params["since"]:
        query = HubQuery(includes=query.includes, since=_BEGINNING, status=query.status,
                         limit=query.limit)
    stored = {key: params[key] for key in ("include", "status", "since") if params[key]}
    if ids is not None:
        stored["ids"] = sorted(ids)
    return query, ids, stored


def _matching(action: str, query: HubQuery, ids: frozenset[str] | None):
    """(source, QuerySet of the matched processes) per source the action applies to: the
    hub's filter (types, status or "not finished", since), the ids when given, and only the
    states the control starts from (a "pause" never matches a paused or finished run)."""
    for source in sources_for_includes(set(query.includes) if query.includes else None):
        matching = getattr(source, "matching", None)
        kind = kind_for_type(source.type_name)
        if matching is None or kind is None or action not in kind.machine.controls:
            continue
        if query.status is None:
            statuses = tuple(source.active_statuses)
        elif query.status in source.statuses:
            statuses = (query.status,)
        else:
            continue
        starts = kind.machine.controls[action].sources
        statuses = tuple(status for status in statuses if status in starts)
        if not statuses:
            continue
        queryset = matching(since=query.since, statuses=statuses)
        if ids is not None:
            queryset = queryset.filter(pk__in=sorted(ids))
        yield source, queryset


def _clean_action(action: Any) -> str:
    if action not in CONTROL_ACTIONS:
        raise InvalidInput(f"Unknown action '{str(action)[:50]}'; use one of: "
                           f"{', '.join(CONTROL_ACTIONS)}.", field="action")
    return action


# --- create, cancel, read ---------------------------------------------------------------


def batch_create(*, tenant: Tenant, action: Any, filter: Any, reason: Any = "",
                 dry_run: bool = False, origin: Origin) -> dict[str, Any] | Batch:
    """Count (`dry_run`: `{"matched": n}`, exact whatever n) or create a batch for `tenant`
    (the current tenant scope must be that tenant) and queue it on the worker."""
    action = _clean_action(action)
    if not isinstance(reason, str):
        raise InvalidInput("reason must be a string.", field="reason")
    reason = clean_note(reason, field="reason")
    query, ids, stored = _parse_filter(filter)
    if dry_run:
        return {"matched": sum(qs.count() for _, qs in _matching(action, query, ids))}
    items: list[str] = []
    for _, queryset in _matching(action, query, ids):
        # One more than the limit is enough to refuse; primary-key order is the order the
        # rows are locked in, chunk by chunk.
        room = MAX_BATCH_ITEMS + 1 - len(items)
        items += list(queryset.order_by("pk").values_list("pk", flat=True)[:room])
        if len(items) > MAX_BATCH_ITEMS:
            raise InvalidInput(
                f"The filter matches more than {MAX_BATCH_ITEMS:,} processes; narrow it "
                "(status, since, include or ids) and run several batches.",
                code="batch_too_large", field="filter",
            )
    with transaction.atomic():
        # The tenant's row is the lock that makes "at most 3 at once" hold under concurrent
        # creates: the second waits here until the first commits, then counts its batch.
        # NO KEY UPDATE does not block the inserts of rows that reference the tenant.
        Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).first()
        active = Batch.objects.filter(tenant_id=tenant.pk, state__in=BATCH_ACTIVE).count()
        if active >= MAX_ACTIVE_BATCHES:
            raise LimitReached(
                f"Tenant {tenant.pk} already has {active} batches queued or running (at most "
                f"{MAX_ACTIVE_BATCHES}); wait for one to finish or cancel one.",
                code="too_many_batches", retry_after=10,
            )
        batch = Batch.objects.create(
            tenant=tenant, action=action, filter=stored, reason=reason, items=items,
            matched=len(items), created_by=origin.actor, created_by_name=origin.actor_name,
            created_scopes=sorted(origin.scopes),
        )
        jobs.enqueue(JOB_NAME, tenant_id=tenant.pk, batch_id=batch.pk)
    return batch


def batch_get(batch_id: str) -> Batch:
    batch = Batch.objects.defer("items").filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(f"Batch {batch_id} not found.")
    return batch


def batch_cancel(batch_id: str) -> Batch:
    """Stop a queued or running batch: it ends `cancelled` now (a running one after the
    chunk in progress commits: that chunk holds the row's lock); items done stay done.
    Cancelling a cancelled batch changes nothing; a completed or failed one → 409."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().defer("items").filter(pk=batch_id).first()
        if batch is None:
            raise NotFound(f"Batch {batch_id} not found.")
        if batch.state == BatchState.CANCELLED:
            return batch
        if batch.state not in BATCH_ACTIVE:
            raise StateConflict(f"Batch {batch_id} is {batch.state}; only queued or running "
                                "batches can be cancelled.", code="invalid_transition")
        _finish(batch, BatchState.CANCELLED)
    return batch


def batch_as_dict(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.pk,
        "tenant_id": batch.tenant_id,
        "action": batch.action,
        "filter": batch.filter,
        "reason": batch.reason,
        "state": batch.state,
        "matched": batch.matched,
        "done": batch.done,
        "failed": batch.failed,
        "skipped": batch.skipped,
        "errors": batch.errors,
        "created_by": batch.created_by,
        "created_at": iso(batch.created_at),
        "started_at": iso(batch.started_at),
        "finished_at": iso(batch.finished_at),
    }


def _finish(batch: Batch, state: str) -> None:
    """End `batch` (locked by the caller's transaction) and announce it once committed."""
    batch.state = state
    batch.finished_at = timezone.now()
    batch.save(update_fields=["state", "finished_at"])
    transaction.on_commit(lambda: _announce(batch))


def _announce(batch: Batch) -> None:
    """The row as it was committed (its final state and counts; `items` left unread)."""
    for receiver, error in batch_completed.send_robust(sender=Batch, batch=batch):
        if error is not None:
            logger.error("batch_completed listener %r failed", receiver, exc_info=error)


# --- running ----------------------------------------------------------------------------


def _origin(batch: Batch) -> Origin:
    return Origin(actor=batch.created_by, actor_name=batch.created_by_name,
                  path=ChangePath.BATCH, cause=ChangeCause.OPERATOR,
                  scopes=frozenset(batch.created_scopes))


def _apply_chunk(batch: Batch, chunk: list[str], origin: Origin) -> dict[str, int]:
    """Apply the batch's control to `chunk` in the caller's transaction; returns the counts
    and appends the first failures to batch.errors."""
    counts = {"done": 0, "failed": 0, "skipped": 0}

    def fail(pk: str, error: DomainError) -> None:
        counts["failed"] += 1
        if len(batch.errors) < MAX_ERRORS:
            batch.errors.append({"process_id": pk, "code": error.code,
                                 "detail": str(error.detail)[:500]})

    groups: dict[str, tuple[ProcessSource | None, list[str]]] = {}
    for pk in chunk:
        source = source_for_id(pk)
        key = source.type_name if source is not None else ""
        groups.setdefault(key, (source, []))[1].append(pk)
    for source, pks in groups.values():
        if source is None:
            counts["skipped"] += len(pks)
            continue
        many = getattr(source, "control_many", None)
        if many is not None:
            result = many(pks, action=batch.action, reason=batch.reason, origin=origin)
            counts["done"] += len(result.applied)
            counts["skipped"] += len(result.skipped)
            for pk, refusal in result.refused.items():
                if isinstance(refusal, StateConflict):  # no longer in a state it moves from
                    counts["skipped"] += 1
                else:
                    fail(pk, refusal)
            continue
        kind = kind_for_type(source.type_name)
        starts = kind.machine.controls[batch.action].sources if kind else frozenset()
        for pk in pks:
            current = source.get(pk)
            if current is None or current.row.status not in starts:
                counts["skipped"] += 1
                continue
            try:
                with transaction.atomic():
                    source.control(pk, action=batch.action, reason=batch.reason,
                                   origin=origin)
            except (NotFound, StateConflict):
                counts["skipped"] += 1
            except DomainError as error:
                fail(pk, error)
            else:
                counts["done"] += 1
    return counts


def batch_run(batch_id: str) -> str:
    """Run (or resume) a batch in the current tenant scope, chunk by chunk; returns the
    state it ended in, or left it in."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.state not in BATCH_ACTIVE:
            return batch.state if batch else "missing"
        if batch.state == BatchState.QUEUED:
            batch.state = BatchState.RUNNING
            batch.started_at = timezone.now()
            batch.save(update_fields=["state", "started_at"])
    items = list(batch.items)
    origin = _origin(batch)
    while True:
        try:
            with transaction.atomic():
                # Locking the batch first serialises a chunk with a cancel and with a
                # second copy of this job (a redelivery): the position read here is the
                # committed one, so no chunk is applied twice.
                batch = (Batch.objects.select_for_update().defer("items")
                         .filter(pk=batch_id).first())
                if batch is None or batch.state != BatchState.RUNNING:
                    return batch.state if batch else "missing"
                chunk = items[batch.position:batch.position + CHUNK_SIZE]
                if not chunk:
                    _finish(batch, BatchState.COMPLETED)
                    return BatchState.COMPLETED
                counts = _apply_chunk(batch, chunk, origin)
                batch.position += len(chunk)
                batch.done += counts["done"]
                batch.failed += counts["failed"]
                batch.skipped += counts["skipped"]
                batch.save(update_fields=["position", "done", "failed", "skipped", "errors"])
        except Exception as exc:
            # An error no item explains (the database went away mid-chunk): that chunk
            # rolled back; the batch ends failed with what it had done, and says why.
            logger.exception("batch %s failed", batch_id)
            with transaction.atomic():
                batch = (Batch.objects.select_for_update().defer("items")
                         .filter(pk=batch_id).first())
                if batch is None or batch.state != BatchState.RUNNING:
                    return batch.state if batch else "missing"
                if len(batch.errors) < MAX_ERRORS:
                    batch.errors.append({"process_id": "", "code": "batch_error",
                                         "detail": f"{type(exc).__name__}: {exc}"[:500]})
                batch.save(update_fields=["errors"])
                _finish(batch, BatchState.FAILED)
            return BatchState.FAILED


def batches_to_dicts(rows: list[Batch]) -> list[dict[str, Any]]:
    return [batch_as_dict(batch) for batch in rows]

