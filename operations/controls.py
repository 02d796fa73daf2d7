"""Operator controls: pause / resume / cancel any process the hub lists.

A control is a named move of the process's own state machine: operations' records move
through `services.transition_apply` (operations/sources.py), other apps' processes through
their own service (a multimodal request's cancel is the API's cancel). Every control that
changes a process is audited in `ControlAction`, in the transaction of the change, so the
history and the process never disagree. Controls record no outcome events: an operator's
click is not a performance signal and must not move a trend.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound

from .choices import CONTROL_ACTIONS
from .hub import source_for_id
from .models import ControlAction

__all__ = ["MAX_REASON_CHARS", "process_control"]

MAX_REASON_CHARS = 2000


def process_control(
    *, process_id: str, action: str, reason: str = "", actor: str
) -> dict[str, Any]:
    """Apply `action` to any registered process and record it (who, when, action, reason,
    state before and after). Returns the process after the action, in the shape of
    GET /v1/operations/processes/{id} (with its control history)."""
    from .selectors import process_detail  # selectors read what this module writes

    if action not in CONTROL_ACTIONS:
        raise InvalidInput(
            f"Unknown action '{action}'; use one of: {', '.join(CONTROL_ACTIONS)}.",
            field="action",
        )
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(
            f"Reason is longer than {MAX_REASON_CHARS} characters.", field="reason"
        )
    source = source_for_id(process_id)
    if source is None:
        raise NotFound(f"Process {process_id} not found.")
    with transaction.atomic():
        outcome = source.control(process_id, action=action, reason=reason, actor=actor)
        # A control that changed nothing (cancelling a request that is already cancelled,
        # which its own API answers with 200 too) leaves no audit row.
        if outcome.state_after != outcome.state_before:
            ControlAction.objects.create(
                tenant_id=outcome.tenant_id,
                process_type=source.type_name,
                process_id=process_id,
                action=action,
                reason=reason,
                actor=actor,
                state_before=outcome.state_before,
                state_after=outcome.state_after,
                # Taken while the process row is locked, so a process's history is in the
                # order its controls were applied.
                created_at=timezone.now(),
            )
    return process_detail(process_id, known=outcome.detail)
