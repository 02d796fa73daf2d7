"""THE place a process's status changes: every process type, every path (DESIGN §8.1).

`apply_status_changes()` is the only code that writes a process's status column: trace
completes, record `/transition` endpoints, hub controls, admin actions and buttons, the
expiry sweep, the multimodal API's execute and cancel, the worker's endings and the reaper
all call it (directly or through `transition_apply`, its one-row form). In one transaction
it locks the rows, checks each move against the type's `StateMachine` (choices.py), the
type's rules beyond the table and the rights of whoever asks (`Origin`), saves the rows and
writes exactly one `StatusChange` history row per change. Because the history is written
here, no caller can forget it, and the history and the process never disagree.

Each process type registers a `ProcessKind` (its model, hub type, machine, status column,
extra rules) from its app's `ready()`: operations' four record types here, multimodal
requests from the multimodal app, so operations never imports another app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from agent33.auth.scopes import ADMIN, BUDGETS_APPROVE, WORKFLOWS_EXECUTE, grants
from agent33.errors import DomainError, Forbidden, NotFound, StateConflict
from agent33.observability.context import current as current_request_context

from . import changelog
from .choices import ChangeCause, HistoryAction, StateMachine
from .models import StatusChange
from .signals import statuses_changed

logger = logging.getLogger("agent33.operations")

__all__ = [
    "APPROVE_PERMISSION",
    "CONTROL_PERMISSION",
    "Origin",
    "ProcessKind",
    "StatusChanges",
    "Transitioned",
    "apply_status_changes",
    "kind_for_type",
    "kind_of",
    "move_refusal",
    "origin_of",
    "register_process_kind",
    "registered_kind",
    "transition_apply",
    "transition_conflict",
]


# --- who asks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Who makes a change, from where, and what they may do.

    `actor`: `token:<prefix>`, `user:<username>` or `system:<job>`; `actor_name`: the
    token's name (or the staff member's full name). `path`: a `ChangePath`. `cause`: a
    `ChangeCause`, or None to let the move decide (a control, an approval or a triage
    decision is an operator's; any other move is the process reporting its own progress).
    `scopes`: what the actor may do, in API scopes (staff: their permissions as scopes; the
    service's own jobs: `admin`). `request_id`: None takes the current request's."""

    actor: str
    path: str
    cause: str | None = None
    scopes: frozenset[str] = frozenset()
    actor_name: str = ""
    request_id: str | None = None

    @classmethod
    def system(cls, job: str, *, path: str, cause: str = ChangeCause.SYSTEM) -> Origin:
        """The service itself (a sweep, the reaper, a worker reporting a provider's answer)."""
        return cls(actor=f"system:{job}", path=path, cause=cause, scopes=frozenset({ADMIN}))

    def via(self, path: str) -> Origin:
        return replace(self, path=path)


# --- process kinds ----------------------------------------------------------------------

# A rule beyond the table: (kind, the row's field values, target, now) → why the move is
# refused, or None.
Refusal = Callable[["ProcessKind", Mapping[str, Any], str, datetime], StateConflict | None]
# What a status brings with it: (row, state before, target, now, origin) → fields to save.
Entering = Callable[[models.Model, str, str, datetime, Origin], dict[str, Any]]


@dataclass(frozen=True)
class ProcessKind:
    """One process type as status changes see it."""

    model: type[models.Model]
    type_name: str  # the hub's `type`
    machine: StateMachine
    status_field: str = "status"
    # Any of these scopes allows the type's control-equivalent moves.
    control_scopes: tuple[str, ...] = (WORKFLOWS_EXECUTE,)
    refusal: Refusal | None = None
    entering: Entering | None = None
    updated_at_field: str = "updated_at"

    def refusal_for(self, values: Mapping[str, Any], target: str,
                    now: datetime) -> StateConflict | None:
        return None if self.refusal is None else self.refusal(self, values, target, now)


_lock = threading.Lock()
_kinds: dict[type[models.Model], ProcessKind] = {}


def register_process_kind(kind: ProcessKind) -> None:
    """Register (or replace) a process type's kind. Call from AppConfig.ready()."""
    with _lock:
        _kinds[kind.model] = kind


def kind_for_type(type_name: str) -> ProcessKind | None:
    """The kind whose hub type is `type_name` (the history's `process_type`), if any."""
    with _lock:
        return next((kind for kind in _kinds.values() if kind.type_name == type_name), None)


def registered_kind(model: type[models.Model]) -> ProcessKind | None:
    """The kind of `model`, or None when it is not a process type (any model's save asks)."""
    return _kinds.get(model)


def kind_of(model: type[models.Model]) -> ProcessKind:
    try:
        return _kinds[model]
    except KeyError:
        raise LookupError(f"{model.__name__} is not a registered process kind") from None


# --- refusals ---------------------------------------------------------------------------


def transition_conflict(
    *, label: str, pk: str, current: str, requested: str, table: Mapping[str, Iterable[str]]
) -> StateConflict:
    allowed = sorted(str(s) for s in table.get(current, ()))
    if allowed:
        hint = f"from '{current}' it may move to: {', '.join(allowed)}"
    else:
        hint = f"'{current}' is final"
    return StateConflict(
        f"Cannot move {label} {pk} from '{current}' to '{requested}' ({hint}).",
        code="invalid_transition",
    )


def move_refusal(model: type[models.Model], values: Mapping[str, Any], target: str, *,
                 origin: Origin | None, now: datetime, move: str = "",
                 only_from: Iterable[str] | None = None) -> DomainError | None:
    """Why a row with these `values` (field name → value, with `id`) may not move to
    `target` now, or None: the status change asks it under the row's lock, and the hub's
    `allowed_actions` and the admin's buttons ask it of the rows they show, so they never
    offer a move it refuses. Order: the named move's own sources, the table, the type's
    rules, then `origin`'s rights (skipped when None), so a caller without the right still
    learns a move is impossible before being told it lacks the right."""
    kind = kind_of(model)
    machine = kind.machine
    pk, current = values["id"], values[kind.status_field]
    if only_from is not None and current not in only_from:
        needed = " or ".join(f"'{state}'" for state in sorted(only_from))
        return StateConflict(
            f"Cannot {move} {machine.label} {pk}: it is '{current}', and {move} needs "
            f"{needed}.",
            code="invalid_transition",
        )
    if not machine.allows(current, target):
        return transition_conflict(label=machine.label, pk=pk, current=current,
                                   requested=target, table=machine.transitions)
    refusal = kind.refusal_for(values, target, now)
    if refusal is not None or origin is None:
        return refusal
    control = machine.control_for(current, target)
    if control and not any(grants(origin.scopes, scope) for scope in kind.control_scopes):
        return Forbidden(
            f"Moving {machine.label} {pk} from '{current}' to '{target}' is a {control}: "
            f"it needs the scope {' or '.join(kind.control_scopes)}.", code="missing_scope",
        )
    if machine.is_approval(current, target) and not grants(origin.scopes, BUDGETS_APPROVE):
        return Forbidden(
            f"Moving {machine.label} {pk} from '{current}' to '{target}' approves it: "
            f"it needs the scope {BUDGETS_APPROVE}.", code="missing_scope",
        )
    return None


# --- the change -------------------------------------------------------------------------


@dataclass(frozen=True)
class Transitioned[M: models.Model]:
    """A process after a move, and the status it had before."""

    obj: M
    state_before: str


@dataclass
class StatusChanges:
    """What one call did: the rows moved, the rows refused (with why), and the rows it did
    not find (absent, another tenant's, outside `where`, or locked when skipping locks)."""

    applied: list[Transitioned] = field(default_factory=list)
    refused: dict[str, DomainError] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def apply_status_changes(
    model: type[models.Model],
    pks: Sequence[str],
    *,
    target: str,
    origin: Origin,
    changes: Mapping[str, Any] | None = None,
    reason: str = "",
    move: str = "",
    only_from: Iterable[str] | None = None,
    where: Q | None = None,
    skip_locked: bool = False,
) -> StatusChanges:
    """Move the processes `pks` of `model` (current tenant scope) to `target`, each if its
    machine, its type's rules and `origin`'s rights allow, writing one history row per
    change, all in one transaction (joined when the caller has one open).

    `changes`: further fields saved with the status. `move`/`only_from`: a named move that
    starts from fewer states than the table allows (the "resume" control, a bulk
    "Approve"). `where`: rows outside it are skipped, not refused (a multimodal request
    ended only under the claim that runs it). `skip_locked`: rows another transaction holds
    are skipped instead of waited for (sweeps).

    Rows are locked in primary-key order, so two calls over overlapping rows never wait for
    each other in a cycle. The rows are saved in one statement (bulk_update when several),
    and the history in one INSERT.
    """
    kind = kind_of(model)
    result = StatusChanges()
    if not pks:
        return result
    status_field = kind.status_field
    request_id = origin.request_id
    if request_id is None:
        request_id = current_request_context().request_id or ""
    with transaction.atomic():
        # `no_key`: the lock does not block inserts of rows that reference these (trace
        # steps), only other writers of the rows. SQLite ignores it: its IMMEDIATE
        # transactions serialise writers anyway.
        rows = model.objects.select_for_update(
            of=("self",), no_key=True, skip_locked=skip_locked
        ).filter(pk__in=list(pks)).order_by("pk")
        if where is not None:
            rows = rows.filter(where)
        locked = {obj.pk: obj for obj in rows}
        now = timezone.now()
        moved: list[tuple[models.Model, str]] = []
        saved_fields: set[str] = set()
        for pk in dict.fromkeys(pks):
            obj = locked.get(pk)
            if obj is None:
                result.skipped.append(pk)
                continue
            current = getattr(obj, status_field)
            refusal = move_refusal(model, vars(obj), target, origin=origin, now=now,
                                   move=move, only_from=only_from)
            if refusal is not None:
                result.refused[pk] = refusal
                continue
            entering = kind.entering(obj, current, target, now, origin) if kind.entering else {}
            fields = {status_field: target, kind.updated_at_field: now, **entering,
                      **(changes or {})}
            for name, value in fields.items():
                setattr(obj, name, value)
            saved_fields |= fields.keys()
            moved.append((obj, current))
        if not moved:
            return result
        if len(moved) == 1:
            moved[0][0].save(update_fields=sorted(saved_fields))
        else:
            model.objects.bulk_update([obj for obj, _ in moved], sorted(saved_fields))
        history = []
        for obj, before in moved:
            cause = origin.cause or kind.machine.cause_of(before, target)
            history.append(StatusChange(
                tenant_id=obj.tenant_id, process_type=kind.type_name, process_id=obj.pk,
                action=_action(kind.machine, before, target, move, cause), cause=cause,
                path=origin.path, reason=reason, actor=origin.actor,
                actor_name=origin.actor_name, state_before=before, state_after=target,
                request_id=request_id, created_at=now,
            ))
        StatusChange.objects.bulk_create(history)
        # The live hub's log, in this same transaction (operations.changelog).
        changelog.record(kind.type_name, [
            (obj.tenant_id, obj.pk, before, target) for obj, before in moved
        ])
        transaction.on_commit(partial(_announce, model, history))
    result.applied = [Transitioned(obj=obj, state_before=before) for obj, before in moved]
    return result


def _announce(model: type[models.Model], changes: list[StatusChange]) -> None:
    """After commit: tell listeners (the live hub, alerts) what changed. A listener's error
    is logged; the change has committed and stands."""
    for receiver, error in statuses_changed.send_robust(sender=model, changes=changes):
        if error is not None:
            logger.error("statuses_changed listener %r failed", receiver, exc_info=error)


def _action(machine: StateMachine, current: str, target: str, move: str, cause: str) -> str:
    """How the history names a move: an approval; an operator's move that equals a control
    (on any path: /metrics counts these as controls); a named move it knows (execute,
    expire); else `move`."""
    if machine.is_approval(current, target):
        return HistoryAction.APPROVE
    control = machine.control_for(current, target)
    if control and cause == ChangeCause.OPERATOR:
        return control
    return move if move in HistoryAction.values else HistoryAction.MOVE


def transition_apply[M: models.Model](
    model: type[M],
    pk: str,
    *,
    target: str,
    origin: Origin,
    changes: Mapping[str, Any] | None = None,
    reason: str = "",
    move: str = "",
    only_from: Iterable[str] | None = None,
) -> Transitioned[M]:
    """`apply_status_changes` for one process that must move: NotFound when absent or
    another tenant's, the refusal (409 or 403) when it may not."""
    done = apply_status_changes(model, [pk], target=target, origin=origin, changes=changes,
                                reason=reason, move=move, only_from=only_from)
    if done.applied:
        return done.applied[0]
    if pk in done.refused:
        raise done.refused[pk]
    raise NotFound(f"{model._meta.verbose_name.capitalize()} {pk} not found.")


# --- origins of requests ----------------------------------------------------------------

CONTROL_PERMISSION = "operations.control_process"
APPROVE_PERMISSION = "operations.approve_budget"


def origin_of(request, *, path: str, cause: str | None = None,
              staff_scopes: Iterable[str] = ()) -> Origin:
    """The origin of a change made through an HTTP request: an API token's scopes, or a
    staff member's permissions as scopes (`operations.control_process`: the controls;
    `operations.approve_budget`: approvals; `staff_scopes`: what the calling admin page
    has already checked, such as the multimodal admin's change permission)."""
    user = request.user
    if getattr(user, "token", None) is not None:  # an API token (agent33.auth)
        return Origin(actor=user.actor_label, actor_name=user.actor_name, path=path,
                      cause=cause, scopes=frozenset(user.scopes))
    scopes = set(staff_scopes)
    if user.has_perm(CONTROL_PERMISSION):
        scopes.add(WORKFLOWS_EXECUTE)
    if user.has_perm(APPROVE_PERMISSION):
        scopes.add(BUDGETS_APPROVE)
    return Origin(actor=f"user:{user.get_username()}", actor_name=user.get_full_name(),
                  path=path, cause=cause, scopes=frozenset(scopes))
