"""Every write to operations records, and THE service that moves a process's status.

`transition_apply()` is the one place an operations record changes status: the record
endpoints (`/transition`, `/complete`), hub controls (operations/controls.py), admin actions
and the expiry sweep all check the type's one `StateMachine` (choices.py) and its guards
here. The row is locked (`SELECT … FOR NO KEY UPDATE` on PostgreSQL; SQLite's IMMEDIATE
transactions serialise writers the same way), the move is checked and the row saved in one
transaction, so two callers racing on a row run one after the other and the second either
applies to the new state or gets a 409, never silently overwrites.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.tenancy.models import Tenant

from .choices import (
    BUDGET_MACHINE,
    INTAKE_DECLINE_CLOSED,
    INTAKE_MACHINE,
    TRACE_MACHINE,
    TRACE_TERMINAL,
    WORKFLOW_MACHINE,
    WORKFLOW_TERMINAL,
    BudgetStatus,
    ProcessType,
    ResearchType,
    StateMachine,
    TraceStatus,
    Urgency,
    WorkflowRunStatus,
)
from .models import AutonomyBudget, ImprovementIntake, Trace, TraceStep, WorkflowRun

__all__ = [
    "Transitioned",
    "budget_create",
    "budget_transition",
    "budgets_expire",
    "intake_create",
    "intake_open_for_decline",
    "intake_transition",
    "lock_for_transition",
    "machine_for",
    "move_refusal",
    "process_type_of",
    "trace_add_step",
    "trace_complete",
    "trace_create",
    "transition_apply",
    "transition_conflict",
    "workflow_run_create",
    "workflow_run_transition",
]

logger = logging.getLogger("agent33.operations")

# Each record model: its hub type and its one state machine.
_KINDS: dict[type[models.Model], tuple[str, StateMachine]] = {
    Trace: (ProcessType.TRACE, TRACE_MACHINE),
    AutonomyBudget: (ProcessType.AUTONOMY_BUDGET, BUDGET_MACHINE),
    ImprovementIntake: (ProcessType.IMPROVEMENT_INTAKE, INTAKE_MACHINE),
    WorkflowRun: (ProcessType.WORKFLOW, WORKFLOW_MACHINE),
}


def machine_for(model: type[models.Model]) -> StateMachine:
    return _KINDS[model][1]


def process_type_of(model: type[models.Model]) -> str:
    return _KINDS[model][0]


# --- the transition service -------------------------------------------------------------


def lock_for_transition[M: models.Model](model: type[M], pk: str) -> M:
    """Fetch and lock a row of the current tenant scope; NotFound when absent or foreign.

    Must run inside a transaction. `no_key=True`: the lock does not block inserts of rows
    that reference this one (trace steps), only other writers of the row itself."""
    if transaction.get_autocommit(using=model.objects.db):
        raise TransactionManagementError("lock_for_transition must run inside a transaction.")
    obj = model.objects.select_for_update(of=("self",), no_key=True).filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{model._meta.verbose_name.capitalize()} {pk} not found.")
    return obj


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


@dataclass(frozen=True)
class Transitioned[M: models.Model]:
    """A process after a move, and the status it had before."""

    obj: M
    state_before: str


def transition_apply[M: models.Model](
    model: type[M],
    pk: str,
    *,
    target: str,
    changes: Mapping[str, Any] | None = None,
    move: str = "",
    only_from: Iterable[str] | None = None,
    actor: str = "",
) -> Transitioned[M]:
    """Move the process `pk` (current tenant scope) to `target`, or raise.

    Checks, on the locked row: the machine's table, then the type's guards (a budget past
    `expires_at` never becomes active: 409 `budget_expired`). `only_from` narrows the states
    a named move (`move`, e.g. the "resume" control) starts from, within what the table
    allows. `changes` are further fields to save with the status; the fields a status brings
    with it (a trace's `completed_at`, a finished run's `duration_ms`, a budget's
    `approved_by` when a person, `actor`, approves it) are set here.
    Joins the caller's transaction (a hub control records its audit row in the same one).
    """
    machine = machine_for(model)
    with transaction.atomic():
        obj = lock_for_transition(model, pk)
        current = obj.status
        # A named move's sources lie within the table's (StateMachine checks), so when it
        # is refused, it is refused in its own words.
        if only_from is not None and current not in only_from:
            needed = " or ".join(f"'{state}'" for state in sorted(only_from))
            raise StateConflict(
                f"Cannot {move} {machine.label} {pk}: it is '{current}', and {move} needs "
                f"{needed}.",
                code="invalid_transition",
            )
        if not machine.allows(current, target):
            raise transition_conflict(
                label=machine.label, pk=pk, current=current, requested=target,
                table=machine.transitions,
            )
        now = timezone.now()
        refusal = move_refusal(model, vars(obj), target, now)
        if refusal is not None:
            raise refusal
        fields = {
            "status": target,
            "updated_at": now,
            **_fields_entering(obj, target, now, actor),
            **(changes or {}),
        }
        for name, value in fields.items():
            setattr(obj, name, value)
        obj.save(update_fields=list(fields))
    return Transitioned(obj=obj, state_before=current)


def move_refusal(
    model: type[models.Model], values: Mapping[str, Any], target: str, now: datetime
) -> StateConflict | None:
    """The rules beyond the table that hold on every path, for a row's `values` (field
    name -> value): why moving it to `target` is refused, or None. The hub's
    `allowed_actions` asks the same question, so it never offers a move this refuses."""
    expires_at = values.get("expires_at")
    if (
        model is AutonomyBudget
        and target == BudgetStatus.ACTIVE
        and expires_at is not None
        and expires_at <= now
    ):
        return StateConflict(
            f"Cannot activate budget {values['id']}: it expired at {expires_at.isoformat()}.",
            code="budget_expired",
        )
    return None


def _fields_entering(
    obj: models.Model, target: str, now: datetime, actor: str
) -> dict[str, Any]:
    """What a status brings with it, whichever path moves the process there."""
    if (
        isinstance(obj, AutonomyBudget)
        and actor
        and obj.status == BudgetStatus.PENDING_APPROVAL
        and target == BudgetStatus.ACTIVE
    ):
        return {"approved_by": actor}
    if isinstance(obj, Trace) and target in TRACE_TERMINAL:
        return {"completed_at": now}
    if isinstance(obj, WorkflowRun) and target in WORKFLOW_TERMINAL and obj.duration_ms is None:
        # The runtime may not time its runs; a finished run still gets a duration.
        return {"duration_ms": max(0, int((now - obj.started_at).total_seconds() * 1000))}
    return {}


# --- traces -----------------------------------------------------------------------------


def trace_create(
    *,
    tenant: Tenant,
    task_id: str = "",
    agent_id: str = "",
    session_id: str = "",
    run_id: str = "",
) -> Trace:
    now = timezone.now()
    return Trace.objects.create(
        tenant=tenant,
        task_id=task_id,
        agent_id=agent_id,
        session_id=session_id,
        run_id=run_id,
        started_at=now,
        updated_at=now,
    )


def trace_add_step(
    *,
    trace: Trace,
    step_id: str,
    actions: list[Any],
    completed_at: datetime | None = None,
) -> TraceStep:
    """Record a finished step. Only a running trace takes steps; a step id is used once."""
    with transaction.atomic():
        # Locking the trace orders this insert against a concurrent complete/cancel: a step
        # can never land on a trace that has already finished.
        locked = lock_for_transition(Trace, trace.pk)
        if locked.status != TraceStatus.RUNNING:
            raise StateConflict(
                f"Trace {locked.pk} is '{locked.status}'; steps can only be added while it is "
                "'running'.",
                code="trace_finished",
            )
        siblings = TraceStep.objects.filter(tenant_id=locked.tenant_id, trace=locked)
        if siblings.filter(step_id=step_id).exists():
            raise StateConflict(
                f"Trace {locked.pk} already has a step '{step_id}'.", code="duplicate_step"
            )
        now = timezone.now()
        step = TraceStep.objects.create(
            tenant_id=locked.tenant_id,
            trace=locked,
            step_id=step_id,
            actions=actions,
            action_count=len(actions),
            completed_at=completed_at or now,
            created_at=now,
        )
        Trace.objects.filter(pk=locked.pk).update(updated_at=now)
    return step


def trace_complete(
    *, trace: Trace, status: str, failure_code: str = "", failure_message: str = ""
) -> Trace:
    if status not in TRACE_TERMINAL:
        raise InvalidInput(
            f"A trace completes with one of: {', '.join(sorted(TRACE_TERMINAL))}.",
            field="status",
        )
    return transition_apply(
        Trace,
        trace.pk,
        target=status,
        changes={"failure_code": failure_code, "failure_message": failure_message},
    ).obj


# --- autonomy budgets -------------------------------------------------------------------


def budget_create(
    *,
    tenant: Tenant,
    task_id: str = "",
    agent_id: str = "",
    limits: dict[str, Any] | None = None,
    approved_by: str = "",
    expires_at: datetime | None = None,
) -> AutonomyBudget:
    now = timezone.now()
    return AutonomyBudget.objects.create(
        tenant=tenant,
        task_id=task_id,
        agent_id=agent_id,
        limits=limits or {},
        approved_by=approved_by,
        expires_at=expires_at,
        started_at=now,
        updated_at=now,
    )


def budget_transition(*, budget: AutonomyBudget, status: str) -> AutonomyBudget:
    return transition_apply(AutonomyBudget, budget.pk, target=status).obj


def budgets_expire(*, now: datetime | None = None, batch_size: int = 500) -> list[str]:
    """Move budgets whose `expires_at` has passed to `expired`, in every tenant (the states
    the machine lets expire: active and suspended); return their ids. Celery beat runs it
    every 30 s, `manage.py expire_budgets` on demand.

    Per batch, one transaction: the due rows are locked with SKIP LOCKED (a budget that a
    request is moving right now is left for the next sweep instead of waited for), then
    updated with the same status condition, so a budget completed in the meantime stays
    completed and none expires twice."""
    now = now or timezone.now()
    live = BUDGET_MACHINE.sources_of(BudgetStatus.EXPIRED)
    due = AutonomyBudget.all_tenants.filter(status__in=live, expires_at__lte=now)
    expired: list[str] = []
    while True:
        with transaction.atomic():
            ids = list(
                due.select_for_update(skip_locked=True)
                .order_by("expires_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if ids:
                due.filter(pk__in=ids).update(status=BudgetStatus.EXPIRED, updated_at=now)
        expired += ids
        if len(ids) < batch_size:
            break
    if expired:
        logger.info("expired %d autonomy budgets past expires_at", len(expired))
    return expired


# --- improvement intakes ----------------------------------------------------------------


def intake_create(
    *,
    tenant: Tenant,
    title: str,
    summary: str = "",
    source: str = "",
    research_type: str = ResearchType.INTERNAL,
    urgency: str = Urgency.MEDIUM,
) -> ImprovementIntake:
    now = timezone.now()
    return ImprovementIntake.objects.create(
        tenant=tenant,
        title=title,
        summary=summary,
        source=source,
        research_type=research_type,
        urgency=urgency,
        started_at=now,
        updated_at=now,
    )


def intake_transition(*, intake: ImprovementIntake, status: str) -> ImprovementIntake:
    return transition_apply(ImprovementIntake, intake.pk, target=status).obj


def intake_open_for_decline(
    *,
    tenant: Tenant,
    metric_type: str,
    domain: str,
    title: str,
    summary: str = "",
    urgency: str = Urgency.HIGH,
    research_type: str = ResearchType.INTERNAL,
    source: str = "outcomes",
) -> tuple[ImprovementIntake, bool]:
    """Open an intake for a declining (metric, domain) trend unless one is already open.

    Returns (intake, created). Safe under concurrency: the partial unique constraint
    `intake_one_open_per_decline` admits one open intake per decline, so of two concurrent
    callers one inserts and the other finds that row.
    """
    decline_key = f"{metric_type}:{domain}"
    existing = _open_decline_intake(tenant, decline_key)
    if existing is not None:
        return existing, False
    now = timezone.now()
    try:
        with transaction.atomic():  # a savepoint when the caller has a transaction open
            intake = ImprovementIntake.objects.create(
                tenant=tenant,
                title=title,
                summary=summary,
                source=source,
                research_type=research_type,
                urgency=urgency,
                decline_key=decline_key,
                started_at=now,
                updated_at=now,
            )
    except IntegrityError:
        existing = _open_decline_intake(tenant, decline_key)
        if existing is None:  # the other row closed in between: nothing left to dedupe with
            raise
        return existing, False
    return intake, True


def _open_decline_intake(tenant: Tenant, decline_key: str) -> ImprovementIntake | None:
    """The tenant's open intake for a decline, if any (the partial unique constraint admits
    at most one)."""
    return (
        ImprovementIntake.objects.filter(tenant=tenant, decline_key=decline_key)
        .exclude(status__in=INTAKE_DECLINE_CLOSED)
        .first()
    )


# --- workflow runs ----------------------------------------------------------------------


def workflow_run_create(
    *,
    tenant: Tenant,
    workflow_name: str,
    trigger_type: str = "",
    started_at: datetime | None = None,
    status: str = WorkflowRunStatus.QUEUED,
    duration_ms: int | None = None,
    error: str = "",
    job_id: str = "",
) -> WorkflowRun:
    if status not in (WorkflowRunStatus.QUEUED, WorkflowRunStatus.RUNNING):
        raise InvalidInput("A workflow run starts 'queued' or 'running'.", field="status")
    now = timezone.now()
    return WorkflowRun.objects.create(
        tenant=tenant,
        workflow_name=workflow_name,
        trigger_type=trigger_type,
        started_at=started_at or now,
        status=status,
        duration_ms=duration_ms,
        error=error,
        job_id=job_id,
        updated_at=now,
    )


def workflow_run_transition(
    *,
    run: WorkflowRun,
    status: str,
    error: str | None = None,
    duration_ms: int | None = None,
) -> WorkflowRun:
    changes: dict[str, Any] = {}
    if error is not None:
        changes["error"] = error
    if duration_ms is not None:
        changes["duration_ms"] = duration_ms
    return transition_apply(WorkflowRun, run.pk, target=status, changes=changes).obj
