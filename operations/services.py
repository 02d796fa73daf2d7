"""Every write to operations records.

State changes are one database step: the row is locked with `select_for_update` (PostgreSQL;
SQLite's IMMEDIATE transactions serialise writers the same way), the transition is checked
against the table in choices.py, and the row is saved, all in one transaction. Two requests
racing on the same row therefore run one after the other, and the second sees the first's
result: it either applies to the new state or gets a 409, never silently overwrites.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, models, router, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.sql import (
    execute_together,
    insert_statement,
    select_instance,
    update_statement,
)
from agent33.tenancy.managers import scope_condition_sql
from agent33.tenancy.models import Tenant

from .choices import (
    BUDGET_TRANSITIONS,
    CONTROL_ACTIONS,
    INTAKE_DECLINE_CLOSED,
    INTAKE_TRANSITIONS,
    TRACE_TERMINAL,
    TRACE_TRANSITIONS,
    WORKFLOW_TERMINAL,
    WORKFLOW_TRANSITIONS,
    BudgetStatus,
    ResearchType,
    TraceStatus,
    Urgency,
    WorkflowRunStatus,
)
from .hub import source_for_id
from .models import (
    AutonomyBudget,
    ControlAction,
    ImprovementIntake,
    Trace,
    TraceStep,
    WorkflowRun,
)

__all__ = [
    "MAX_REASON_CHARS",
    "budget_create",
    "budget_transition",
    "budgets_expire",
    "control_apply",
    "intake_create",
    "intake_open_for_decline",
    "intake_transition",
    "lock_for_transition",
    "process_control",
    "trace_add_step",
    "trace_complete",
    "trace_create",
    "transition_conflict",
    "workflow_run_create",
    "workflow_run_transition",
]

logger = logging.getLogger("agent33.operations")

MAX_REASON_CHARS = 2000


# --- shared transition machinery --------------------------------------------------------


def lock_for_transition[M: models.Model](model: type[M], pk: str) -> M:
    """Fetch and lock a row of the current tenant scope; NotFound when absent or foreign.

    Must run inside a transaction. On PostgreSQL the row is read `FOR NO KEY UPDATE`, which
    does not block inserts of rows referencing this one (trace steps), only other writers of
    the row itself; SQLite's IMMEDIATE transactions already serialise writers. Hand-written
    (agent33.sql) because every control and transition pays for it: the ORM's
    `select_for_update().filter().first()` cost about 2 ms of CPU here for a 0.2 ms query.
    """
    connection = connections[router.db_for_write(model)]
    if connection.get_autocommit():
        raise TransactionManagementError("lock_for_transition must run inside a transaction.")
    quote = connection.ops.quote_name
    in_scope, scope_params = scope_condition_sql(quote("tenant_id"))
    obj = select_instance(
        model,
        connection,
        f"{quote(model._meta.pk.column)} = %s AND {in_scope}",
        [pk, *scope_params],
        lock=True,
    )
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


def _transition[M: models.Model](
    model: type[M],
    pk: str,
    *,
    target: str,
    table: Mapping[str, Iterable[str]],
    label: str,
    changes: Mapping[str, Any] | None = None,
) -> M:
    with transaction.atomic():
        obj = lock_for_transition(model, pk)
        current = obj.status
        if target not in table.get(current, ()):
            raise transition_conflict(
                label=label, pk=pk, current=current, requested=target, table=table
            )
        fields = {"status": target, "updated_at": timezone.now(), **(changes or {})}
        for name, value in fields.items():
            setattr(obj, name, value)
        obj.save(update_fields=list(fields))
    return obj


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
    return _transition(
        Trace,
        trace.pk,
        target=status,
        table=TRACE_TRANSITIONS,
        label="trace",
        changes={
            "failure_code": failure_code,
            "failure_message": failure_message,
            "completed_at": timezone.now(),
        },
    )


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
    expires_at = budget.expires_at
    if status == BudgetStatus.ACTIVE and expires_at and expires_at <= timezone.now():
        raise StateConflict(
            f"Cannot activate budget {budget.pk}: it expired at {expires_at.isoformat()}.",
            code="budget_expired",
        )
    return _transition(
        AutonomyBudget, budget.pk, target=status, table=BUDGET_TRANSITIONS, label="budget"
    )


def budgets_expire(*, now: datetime | None = None, batch_size: int = 500) -> list[str]:
    """Move active and suspended budgets whose `expires_at` has passed to `expired`, in every
    tenant; return their ids. Celery beat runs it every 30 s, `manage.py expire_budgets` on
    demand. One conditional `UPDATE … RETURNING` per batch: a budget completed or cancelled
    in the meantime is left as it is, and two sweeps never expire the same budget twice."""
    now = now or timezone.now()
    connection = connections[router.db_for_write(AutonomyBudget)]
    quote = connection.ops.quote_name
    # The states the transition table lets expire: active and suspended.
    live = sorted(
        str(status) for status, targets in BUDGET_TRANSITIONS.items()
        if BudgetStatus.EXPIRED in targets
    )
    due = (
        f"{quote('status')} IN ({', '.join(['%s'] * len(live))}) "
        f"AND {quote('expires_at')} <= %s"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    table = quote(AutonomyBudget._meta.db_table)
    # The subquery picks a batch; the outer condition re-checks each row as it is updated.
    batch = (
        f"{quote('id')} IN (SELECT {quote('id')} FROM {table} WHERE {due} "  # noqa: S608
        f"ORDER BY {quote('expires_at')} LIMIT %s) AND {due}"
    )
    sql, params = update_statement(
        AutonomyBudget,
        {"status": BudgetStatus.EXPIRED, "updated_at": now},
        connection,
        batch,
        [*live, stamp, batch_size, *live, stamp],
    )
    expired: list[str] = []
    while True:
        with connection.cursor() as cursor:  # one statement: atomic on its own
            cursor.execute(f"{sql} RETURNING {quote('id')}", params)
            ids = [row[0] for row in cursor.fetchall()]
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
    return _transition(
        ImprovementIntake, intake.pk, target=status, table=INTAKE_TRANSITIONS, label="intake"
    )


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
    at most one), in the caller's tenant scope. Hand-written (agent33.sql): a declining
    trend asks after every event that touches it."""
    connection = connections[router.db_for_read(ImprovementIntake)]
    quote = connection.ops.quote_name
    in_scope, scope_params = scope_condition_sql(quote("tenant_id"))
    closed = sorted(str(status) for status in INTAKE_DECLINE_CLOSED)
    return select_instance(
        ImprovementIntake,
        connection,
        f"{quote('tenant_id')} = %s AND {in_scope} AND {quote('decline_key')} = %s "
        f"AND {quote('status')} NOT IN ({', '.join(['%s'] * len(closed))})",
        [tenant.pk, *scope_params, decline_key, *closed],
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
    elif status in WORKFLOW_TERMINAL and run.duration_ms is None:
        # The runtime may not time its runs; a finished run still gets a duration.
        elapsed = timezone.now() - run.started_at
        changes["duration_ms"] = max(0, int(elapsed.total_seconds() * 1000))
    return _transition(
        WorkflowRun,
        run.pk,
        target=status,
        table=WORKFLOW_TRANSITIONS,
        label="workflow run",
        changes=changes,
    )


# --- operator controls ------------------------------------------------------------------


def process_control(
    *, process_id: str, action: str, reason: str = "", actor: str
) -> dict[str, Any]:
    """Pause / resume / cancel any registered process, recording a ControlAction.

    The state change and its audit record commit together. Returns the process detail after
    the action (same shape as GET /v1/operations/processes/{id}).
    """
    from .selectors import process_detail  # selectors import this module's siblings only

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
        if outcome.history is None:  # the source did not record the control
            applied = AppliedControl(
                tenant_id=outcome.tenant_id,
                process_type=source.type_name,
                process_id=process_id,
                action=action,
                reason=reason,
                actor=actor,
                state_before=outcome.state_before,
                state_after=outcome.state_after,
                at=timezone.now(),
            )
            applied.audit_row().save(force_insert=True)
    return process_detail(process_id, known=outcome.detail, history=outcome.history)


def control_apply(
    obj: models.Model,
    changes: Mapping[str, Any],
    *,
    process_type: str,
    action: str,
    reason: str,
    actor: str,
    state_before: str,
) -> list[dict[str, Any]]:
    """Save a control's `changes` to a process row locked by `lock_for_transition`, record its
    ControlAction, and return the process's control history after it
    (oldest first).

    For a source whose process is a row of its own model (ModelProcessSource). The UPDATE,
    the audit INSERT and the history read are one
    statement on PostgreSQL (agent33.sql): a control is the hub's most latency-sensitive
    write. The audit row's time is the row's new `updated_at`, taken after the lock, so a
    process's history is in the order its controls were applied.
    """
    from .selectors import HISTORY_LIMIT, control_history_statement, history_entries

    connection = connections[router.db_for_write(type(obj))]
    quote = connection.ops.quote_name
    now = timezone.now()
    changes = {**changes, "updated_at": now}
    for name, value in changes.items():
        setattr(obj, name, value)
    applied = AppliedControl(
        tenant_id=obj.tenant_id,
        process_type=process_type,
        process_id=obj.pk,
        action=action,
        reason=reason,
        actor=actor,
        state_before=state_before,
        state_after=obj.status,
        at=now,
    )
    writes = [
        update_statement(
            type(obj), changes, connection, f"{quote(obj._meta.pk.column)} = %s", [obj.pk]
        ),
        insert_statement(applied.audit_row(), connection),
    ]
    previous = execute_together(
        connection,
        writes,
        read=control_history_statement(
            tenant_id=obj.tenant_id, process_id=obj.pk, limit=HISTORY_LIMIT - 1
        ),
    )
    this_control = (action, reason, actor, state_before, obj.status, now)
    return history_entries([this_control, *previous])


@dataclass(frozen=True)
class AppliedControl:
    """A control that has just moved a process: what its audit row says."""

    tenant_id: str
    process_type: str
    process_id: str
    action: str
    reason: str
    actor: str
    state_before: str
    state_after: str
    at: datetime

    def audit_row(self) -> ControlAction:
        return ControlAction(
            tenant_id=self.tenant_id,
            process_type=self.process_type,
            process_id=self.process_id,
            action=self.action,
            reason=self.reason,
            actor=self.actor,
            state_before=self.state_before,
            state_after=self.state_after,
            created_at=self.at,
        )
