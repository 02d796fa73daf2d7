"""What people do to processes: operator controls and staff moves, each audited.

- A control (pause / resume / cancel, on any process the hub lists) is a named move of the
  process's own state machine: operations' records move through `services.transition_apply`
  (operations/sources.py), other apps' processes through their own service (a multimodal
  request's cancel is the API's cancel).
- A staff move (the intake and budget admin pages' buttons and bulk actions) moves an
  operations record to any status its table allows, through the same `transition_apply`.

Each change is audited in `ControlAction` (the process's history), in the transaction of the
change, so the history and the process never disagree. Neither records outcome events: a
person's click is not a performance signal and must not move a trend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound

from .choices import CONTROL_ACTIONS, HistoryAction
from .hub import source_for_id
from .models import ControlAction
from .services import Transitioned, process_type_of, transition_apply

__all__ = ["MAX_REASON_CHARS", "process_control", "process_move"]

MAX_REASON_CHARS = 2000


def process_control(
    *, process_id: str, action: str, reason: str = "", actor: str
) -> dict[str, Any]:
    """Apply `action` to any registered process and record it (who, when, action, reason,
    state before and after). Returns the process after the action, in the shape of
    GET /v1/operations/processes/{id} (with its history)."""
    from .selectors import process_detail  # selectors read what this module writes

    if action not in CONTROL_ACTIONS:
        raise InvalidInput(
            f"Unknown action '{action}'; use one of: {', '.join(CONTROL_ACTIONS)}.",
            field="action",
        )
    reason = _clean_note(reason, field="reason")
    source = source_for_id(process_id)
    if source is None:
        raise NotFound(f"Process {process_id} not found.")
    with transaction.atomic():
        outcome = source.control(process_id, action=action, reason=reason, actor=actor)
        # A control that changed nothing (cancelling a request that is already cancelled,
        # which its own API answers with 200 too) leaves no history row.
        if outcome.state_after != outcome.state_before:
            _record(tenant_id=outcome.tenant_id, process_type=source.type_name,
                    process_id=process_id, action=action, reason=reason, actor=actor,
                    state_before=outcome.state_before, state_after=outcome.state_after)
    return process_detail(process_id, known=outcome.detail)


def process_move[M: models.Model](
    model: type[M],
    pk: str,
    *,
    target: str,
    actor: str,
    note: str = "",
    only_from: Iterable[str] | None = None,
    move: str = "",
) -> Transitioned[M]:
    """A staff member moves an operations record (current tenant scope) to `target`: the same
    service and rules as every other path, recorded in the process's history as a `move`
    with the note. `only_from`/`move` name a narrower move (a bulk "Approve" applies to
    budgets pending approval only). A budget moved from pending approval to active is
    approved by `actor`."""
    note = _clean_note(note, field="note")
    with transaction.atomic():
        moved = transition_apply(model, pk, target=target, only_from=only_from, move=move,
                                 actor=actor)
        _record(tenant_id=moved.obj.tenant_id, process_type=process_type_of(model),
                process_id=moved.obj.pk, action=HistoryAction.MOVE, reason=note, actor=actor,
                state_before=moved.state_before, state_after=moved.obj.status)
    return moved


def _clean_note(text: str, *, field: str) -> str:
    text = (text or "").strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"{field.capitalize()} is longer than {MAX_REASON_CHARS} characters.",
                           field=field)
    return text


def _record(*, tenant_id: str, process_type: str, process_id: str, action: str, reason: str,
            actor: str, state_before: str, state_after: str) -> None:
    """The history row of a change, in its transaction. Its time is taken while the process
    row is locked, so a process's history is in the order its changes were applied."""
    ControlAction.objects.create(
        tenant_id=tenant_id, process_type=process_type, process_id=process_id, action=action,
        reason=reason, actor=actor, state_before=state_before, state_after=state_after,
        created_at=timezone.now(),
    )
