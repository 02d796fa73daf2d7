"""Every write to operations records. Their status changes go through
`operations.transitions.apply_status_changes` (the one place a status changes, with its
history row); this module registers operations' four record types there and offers the
record endpoints' services.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.tenancy.context import all_tenants_scope
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
    ChangePath,
    HistoryAction,
    ProcessType,
    ResearchType,
    StateMachine,
    TraceStatus,
    Urgency,
    WorkflowRunStatus,
)
from .models import AutonomyBudget, ImprovementIntake, Trace, TraceStep, WorkflowRun
from .transitions import (
    Origin,
    ProcessKind,
    apply_status_changes,
    kind_of,
    register_process_kind,
    transition_apply,
)

__all__ = [
    "budget_create",
    "budget_transition",
    "budgets_expire",
    "intake_create",
    "intake_open_for_decline",
    "intake_transition",
    "lock_for_transition",
    "machine_for",
    "process_type_of",
    "register_operations_kinds",
    "trace_add_step",
    "trace_complete",
    "trace_create",
    "workflow_run_create",
    "workflow_run_transition",
]

logger = logging.getLogger("agent33.operations")


def machine_for(model: type[models.Model]) -> StateMachine:
    return kind_of(model).machine


def process_type_of(model: type[models.Model]) -> str:
    return kind_of(model).type_name


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


def _budget_refusal(kind: ProcessKind, values: Mapping[str, Any], target: str,
                    now: datetime) -> StateConflict | None:
    """A budget past `expires_at` never becomes active, whoever asks."""
    expires_at = values.get("expires_at")
    if target == BudgetStatus.ACTIVE and expires_at is not None and expires_at <= now:
        return StateConflict(
            f"Cannot activate budget {values['id']}: it expired at {expires_at.isoformat()}.",
            code="budget_expired",
        )
    return None


def _budget_entering(obj: AutonomyBudget, current: str, target: str, now: datetime,
                     origin: Origin) -> dict[str, Any]:
    # The approver is whoever made the approving move (the status change has checked their
    # right to): never a name a client typed.
    if BUDGET_MACHINE.is_approval(current, target):
        return {"approved_by": origin.actor}
    return {}


def _trace_entering(obj: Trace, current: str, target: str, now: datetime,
                    origin: Origin) -> dict[str, Any]:
    return {"completed_at": now} if target in TRACE_TERMINAL else {}


def _run_entering(obj: WorkflowRun, current: str, target: str, now: datetime,
                  origin: Origin) -> dict[str, Any]:
    if target in WORKFLOW_TERMINAL and obj.duration_ms is None:
        # The runtime may not time its runs; a finished run still gets a duration.
        return {"duration_ms": max(0, int((now - obj.started_at).total_seconds() * 1000))}
    return {}


def register_operations_kinds() -> None:
    """Operations' record types as status changes see them (OperationsConfig.ready)."""
    for kind in (
        ProcessKind(Trace, ProcessType.TRACE.value, TRACE_MACHINE, entering=_trace_entering),
        ProcessKind(AutonomyBudget, ProcessType.AUTONOMY_BUDGET.value, BUDGET_MACHINE,
                    refusal=_budget_refusal, entering=_budget_entering),
        ProcessKind(ImprovementIntake, ProcessType.IMPROVEMENT_INTAKE.value, INTAKE_MACHINE),
        ProcessKind(WorkflowRun, ProcessType.WORKFLOW.value, WORKFLOW_MACHINE,
                    entering=_run_entering),
    ):
        register_process_kind(kind)


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
    with transaction.atomic():  # the row and its live-hub log row (changelog)
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
    *, trace: Trace, origin: Origin, status: str, failure_code: str = "",
    failure_message: str = "",
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
        origin=origin,
        changes={"failure_code": failure_code, "failure_message": failure_message},
        reason=failure_message,
    ).obj


# --- autonomy budgets -------------------------------------------------------------------


def budget_create(
    *,
    tenant: Tenant,
    task_id: str = "",
    agent_id: str = "",
    limits: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> AutonomyBudget:
    """A new budget, in draft. It is approved only by a move that records its approver
    (`budgets:approve`), never by a name set at creation."""
    now = timezone.now()
    with transaction.atomic():  # the row and its live-hub log row (changelog)
        return AutonomyBudget.objects.create(
            tenant=tenant,
            task_id=task_id,
            agent_id=agent_id,
            limits=limits or {},
            expires_at=expires_at,
            started_at=now,
            updated_at=now,
        )


def budget_transition(*, budget: AutonomyBudget, origin: Origin, status: str,
                      reason: str = "") -> AutonomyBudget:
    return transition_apply(AutonomyBudget, budget.pk, target=status, origin=origin,
                            reason=reason).obj


def budgets_expire(*, now: datetime | None = None, batch_size: int = 500) -> list[str]:
    """Move budgets whose `expires_at` has passed to `expired`, in every tenant (the states
    the machine lets expire: active and suspended); return their ids. The periodic schedule
    runs it every 30 s, `manage.py expire_budgets` on demand.

    Per batch, one status change (`apply_status_changes`): the due rows are locked with
    SKIP LOCKED (a budget that a request is moving right now is left for the next sweep
    instead of waited for), moved in one statement and recorded in one history INSERT
    (cause system, path sweep). Each row is checked under its lock, so a budget completed
    in the meantime stays completed and none expires twice."""
    now = now or timezone.now()
    live = BUDGET_MACHINE.sources_of(BudgetStatus.EXPIRED)
    origin = Origin.system("expiry-sweep", path=ChangePath.SWEEP)
    expired: list[str] = []
    with all_tenants_scope():
        due = AutonomyBudget.objects.filter(status__in=live, expires_at__lte=now)
        while True:
            ids = list(due.order_by("expires_at", "pk").values_list("pk", flat=True)
                       [:batch_size])
            if not ids:
                break
            done = apply_status_changes(
                AutonomyBudget, ids, target=BudgetStatus.EXPIRED, origin=origin,
                where=Q(status__in=live, expires_at__lte=now), skip_locked=True,
                move=HistoryAction.EXPIRE,
                reason=f"expires_at passed (sweep at {now.isoformat()})",
            )
            expired += [moved.obj.pk for moved in done.applied]
            if len(ids) < batch_size or not done.applied:
                # Every due row of this batch was locked by someone else: the next sweep
                # takes them.
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
    with transaction.atomic():  # the row and its live-hub log row (changelog)
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


def intake_transition(*, intake: ImprovementIntake, origin: Origin, status: str,
                      reason: str = "") -> ImprovementIntake:
    return transition_apply(ImprovementIntake, intake.pk, target=status, origin=origin,
                            reason=reason).obj


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
    with transaction.atomic():  # the row and its live-hub log row (changelog)
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
    origin: Origin,
    status: str,
    error: str | None = None,
    duration_ms: int | None = None,
    reason: str = "",
) -> WorkflowRun:
    changes: dict[str, Any] = {}
    if error is not None:
        changes["error"] = error
    if duration_ms is not None:
        changes["duration_ms"] = duration_ms
    return transition_apply(WorkflowRun, run.pk, target=status, origin=origin, changes=changes,
                            reason=reason or error or "").obj
