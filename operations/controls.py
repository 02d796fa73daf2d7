"""What people do to processes: operator controls and staff moves.

- A control (pause / resume / cancel, on any process the hub lists) is a named move of the
  process's own state machine: operations' records move through `transition_apply`
  (operations/sources.py), other apps' processes through their own service (a multimodal
  request's cancel is the API's cancel).
- A staff move (the intake and budget admin pages' buttons and bulk actions) moves an
  operations record to any status its table allows, through the same `transition_apply`.

Both end in `transitions.apply_status_changes`, which writes the history row in the
transaction of the change. Neither records outcome events: a person's click is not a
performance signal and must not move a trend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from agent33.errors import InvalidInput, NotFound

from .choices import CONTROL_ACTIONS
from .hub import source_for_id
from .transitions import Origin, Transitioned, transition_apply

__all__ = ["MAX_REASON_CHARS", "clean_note", "process_control", "process_move"]

MAX_REASON_CHARS = 2000


def process_control(
    *, process_id: str, action: str, origin: Origin, reason: str = ""
) -> dict[str, Any]:
    """Apply `action` to any registered process. Returns the process after the action, in
    the shape of GET /v1/operations/processes/{id} (with its history)."""
    from .selectors import process_detail  # selectors read what this module writes

    if action not in CONTROL_ACTIONS:
        raise InvalidInput(
            f"Unknown action '{action}'; use one of: {', '.join(CONTROL_ACTIONS)}.",
            field="action",
        )
    reason = clean_note(reason, field="reason")
    source = source_for_id(process_id)
    if source is None:
        raise NotFound(f"Process {process_id} not found.")
    detail = source.control(process_id, action=action, reason=reason, origin=origin)
    return process_detail(process_id, known=detail)


def process_move[M: models.Model](
    model: type[M],
    pk: str,
    *,
    target: str,
    origin: Origin,
    note: str = "",
    only_from: Iterable[str] | None = None,
    move: str = "",
) -> Transitioned[M]:
    """A staff member moves an operations record (current tenant scope) to `target`: the same
    service and rules as every other path. `only_from`/`move` name a narrower move (a bulk
    "Approve" applies to budgets pending approval only)."""
    note = clean_note(note, field="note")
    return transition_apply(model, pk, target=target, origin=origin, reason=note,
                            only_from=only_from, move=move)


def clean_note(text: str, *, field: str) -> str:
    text = (text or "").strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"{field.capitalize()} is longer than {MAX_REASON_CHARS} characters.",
                           field=field)
    return text
