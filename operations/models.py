"""Process records written by the agent runtime, and the audit trail of operator controls.

Every index leads with `tenant` (DESIGN §3). Besides the list indexes, each process table has
two indexes for the hub's query shapes:
- `(tenant, status, started_at)`: the hub with `status=`, and list filters by status;
- a partial `(tenant, started_at) WHERE status IN <active>`: the default hub view ("not
  finished, newest first"), read as one ordered index range whatever the table size.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agent33.ids import PrefixedIdField
from agent33.tenancy.models import TenantOwnedModel

from .choices import (
    BUDGET_ACTIVE,
    INTAKE_ACTIVE,
    INTAKE_DECLINE_CLOSED,
    TRACE_ACTIVE,
    WORKFLOW_ACTIVE,
    BudgetStatus,
    ChangeCause,
    ChangePath,
    HistoryAction,
    IntakeStatus,
    ResearchType,
    TraceStatus,
    Urgency,
    WorkflowRunStatus,
)

__all__ = [
    "AutonomyBudget",
    "Batch",
    "ControlCount",
    "ImprovementIntake",
    "ProcessCount",
    "ProcessEvent",
    "StatusChange",
    "Trace",
    "TraceStep",
    "WorkflowRun",
]


def _process_indexes(prefix: str, active: tuple[str, ...]) -> list[models.Index]:
    return [
        models.Index(fields=["tenant", "started_at"], name=f"{prefix}_tenant_started"),
        models.Index(fields=["tenant", "status", "started_at"], name=f"{prefix}_tenant_status"),
        models.Index(
            fields=["tenant", "started_at"],
            name=f"{prefix}_tenant_active",
            condition=Q(status__in=list(active)),
        ),
    ]


def _status_check(prefix: str, choices: type[models.TextChoices]) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(status__in=list(choices.values)), name=f"{prefix}_status_valid"
    )


class Trace(TenantOwnedModel):
    """One agent execution: steps with their actions, ending in a terminal status."""

    id = PrefixedIdField(prefix="trace")
    task_id = models.CharField(max_length=200, blank=True, default="")
    agent_id = models.CharField(max_length=200, blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    run_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(
        max_length=20, choices=TraceStatus.choices, default=TraceStatus.RUNNING
    )
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            *_process_indexes("trace", TRACE_ACTIVE),
            models.Index(fields=["tenant", "task_id"], name="trace_tenant_task"),
            models.Index(fields=["tenant", "agent_id"], name="trace_tenant_agent"),
        ]
        constraints = [_status_check("trace", TraceStatus)]

    def __str__(self) -> str:
        return self.task_id or self.id

    @property
    def duration_ms(self) -> int | None:
        if self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)


class TraceStep(TenantOwnedModel):
    """A completed step of a trace and the actions it took (a JSON list, kept as sent)."""

    # The FK's own index would not lead with tenant; the unique constraint below covers it.
    trace = models.ForeignKey(
        Trace, on_delete=models.CASCADE, related_name="steps", db_index=False
    )
    step_id = models.CharField(max_length=200)
    actions = models.JSONField(default=list, blank=True)
    # Stored at insert so the hub's detail can show counts without loading every action.
    action_count = models.PositiveIntegerField(default=0, editable=False)
    completed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "trace", "step_id"], name="tracestep_unique_step"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "trace", "created_at"], name="tracestep_tenant_trace"),
        ]

    def __str__(self) -> str:
        return self.step_id


class AutonomyBudget(TenantOwnedModel):
    """What an agent may do on a task without asking (limits), and whether it currently may."""

    id = PrefixedIdField(prefix="budget")
    task_id = models.CharField(max_length=200, blank=True, default="")
    agent_id = models.CharField(max_length=200, blank=True, default="")
    limits = models.JSONField(default=dict, blank=True)
    approved_by = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=BudgetStatus.choices, default=BudgetStatus.DRAFT
    )
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            *_process_indexes("budget", BUDGET_ACTIVE),
            models.Index(fields=["tenant", "task_id"], name="budget_tenant_task"),
            models.Index(fields=["tenant", "agent_id"], name="budget_tenant_agent"),
        ]
        constraints = [_status_check("budget", BudgetStatus)]
        permissions = [
            ("approve_budget", "Can approve autonomy budgets (draft or pending → active)"),
        ]

    def __str__(self) -> str:
        return self.task_id or self.id


class ImprovementIntake(TenantOwnedModel):
    """A proposed improvement moving through triage and analysis to a decision."""

    id = PrefixedIdField(prefix="intake")
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True, default="")
    source = models.CharField(max_length=200, blank=True, default="")
    research_type = models.CharField(
        max_length=20, choices=ResearchType.choices, default=ResearchType.INTERNAL
    )
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.MEDIUM)
    status = models.CharField(
        max_length=20, choices=IntakeStatus.choices, default=IntakeStatus.SUBMITTED
    )
    # Set only for intakes opened by a declining outcome trend ("<metric>:<domain>"): the
    # partial unique constraint lets one open intake exist per decline, so two concurrent
    # events cannot open two (the second insert fails and finds the first).
    decline_key = models.CharField(max_length=300, blank=True, default="", editable=False)
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            *_process_indexes("intake", INTAKE_ACTIVE),
            # /metrics counts the intakes declines opened: only those rows are in it.
            models.Index(fields=["tenant"], name="intake_tenant_decline",
                         condition=~Q(decline_key="")),
        ]
        constraints = [
            _status_check("intake", IntakeStatus),
            models.CheckConstraint(
                condition=Q(research_type__in=list(ResearchType.values)),
                name="intake_research_type_valid",
            ),
            models.CheckConstraint(
                condition=Q(urgency__in=list(Urgency.values)), name="intake_urgency_valid"
            ),
            models.UniqueConstraint(
                fields=["tenant", "decline_key"],
                condition=~Q(decline_key="") & ~Q(status__in=sorted(INTAKE_DECLINE_CLOSED)),
                name="intake_one_open_per_decline",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class WorkflowRun(TenantOwnedModel):
    """One execution of a named workflow."""

    id = PrefixedIdField(prefix="wfrun")
    workflow_name = models.CharField(max_length=200)
    trigger_type = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(
        max_length=20, choices=WorkflowRunStatus.choices, default=WorkflowRunStatus.QUEUED
    )
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    job_id = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            *_process_indexes("wfrun", WORKFLOW_ACTIVE),
            models.Index(fields=["tenant", "workflow_name"], name="wfrun_tenant_workflow"),
            models.Index(fields=["tenant", "job_id"], name="wfrun_tenant_job"),
        ]
        constraints = [_status_check("wfrun", WorkflowRunStatus)]

    def __str__(self) -> str:
        return self.workflow_name


class StatusChange(TenantOwnedModel):
    """A process's history: one row per status change, of every process type, on every path
    (DESIGN §8.1): who (`actor`: `token:<prefix>`, `user:<username>` or `system:<job>`, and
    `actor_name`: the token's name), why (`cause`: operator, process or system), where
    (`path`: api, hub, admin, batch, sweep, worker), the state before and after, the reason
    or note, and the id of the request that made it.

    Written only by `operations.transitions.apply_status_changes`, in the transaction of the
    change it records, so no path can skip it and the history and the process never disagree.
    The process is referenced by type and id, not by foreign key, because processes of other
    apps (multimodal requests) change through it too.
    """

    process_type = models.CharField(max_length=40)
    process_id = models.CharField(max_length=64)
    action = models.CharField(max_length=20, choices=HistoryAction.choices)
    cause = models.CharField(max_length=20, choices=ChangeCause.choices)
    path = models.CharField(max_length=20, choices=ChangePath.choices)
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=300)
    actor_name = models.CharField(max_length=200, blank=True, default="")
    state_before = models.CharField(max_length=40)
    state_after = models.CharField(max_length=40)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["tenant", "process_id", "created_at", "id"], name="ctrl_tenant_process_seq"
            ),
            models.Index(fields=["tenant", "created_at"], name="ctrl_tenant_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=list(HistoryAction.values)), name="ctrl_action_valid"
            ),
            models.CheckConstraint(
                condition=Q(cause__in=list(ChangeCause.values)), name="change_cause_valid"
            ),
            models.CheckConstraint(
                condition=Q(path__in=list(ChangePath.values)), name="change_path_valid"
            ),
        ]
        permissions = [
            ("control_process", "Can change process states from the admin (controls, moves)"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.process_id}"


class ProcessCount(TenantOwnedModel):
    """How many of a tenant's processes of one type are in one status: kept by database
    triggers as rows change (agent33.observability.row_counts), read by /metrics."""

    process_type = models.CharField(max_length=40)
    status = models.CharField(max_length=40)
    count = models.BigIntegerField(default=0)

    class Meta:
        # Delta rows (agent33.observability.row_counts): a key's count is their sum.
        indexes = [
            models.Index(fields=["tenant", "process_type", "status"], name="proccount_key"),
        ]

    def __str__(self) -> str:
        return f"{self.process_type}/{self.status}: {self.count}"


class ControlCount(TenantOwnedModel):
    """How many status changes of each action a tenant's processes of one type received; kept
    by database triggers on StatusChange, read by /metrics (which reports the controls)."""

    process_type = models.CharField(max_length=40)
    action = models.CharField(max_length=20)
    count = models.BigIntegerField(default=0)

    class Meta:
        # Delta rows (agent33.observability.row_counts): a key's count is their sum.
        indexes = [
            models.Index(fields=["tenant", "process_type", "action"], name="ctrlcount_key"),
        ]

    def __str__(self) -> str:
        return f"{self.process_type}/{self.action}: {self.count}"


class ProcessEvent(TenantOwnedModel):
    """The live hub's change log: one row per process created or status changed, of every
    process type, written in the transaction of the change (operations.changelog), so a
    reader never sees a change that rolled back and never misses one that committed.

    `seq` is the stream's event id. It is given at commit, in commit order (PostgreSQL: a
    deferred trigger under one transaction-scoped advisory lock; SQLite: one writer at a
    time, so an insert trigger copies `id`), so "every event after N" read after an event N
    was seen never skips a change that committed later with a smaller `id`. Rows not yet
    committed have no `seq`. Kept `AGENT33_HUB_STREAM_KEEP_SECONDS`, then pruned.
    """

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(null=True, blank=True, editable=False)
    process_type = models.CharField(max_length=40)
    process_id = models.CharField(max_length=64)
    state_before = models.CharField(max_length=40, blank=True, default="")  # "": created
    state_after = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "seq"], name="procevent_tenant_seq"),
            models.Index(fields=["seq"], name="procevent_seq"),
            models.Index(fields=["created_at"], name="procevent_created"),
        ]

    def __str__(self) -> str:
        return f"{self.seq or '-'} {self.process_id} {self.state_before}->{self.state_after}"


class BatchState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


BATCH_ACTIVE: tuple[str, ...] = (BatchState.QUEUED, BatchState.RUNNING)


class Batch(TenantOwnedModel):
    """One control (pause, resume, cancel) applied to every process a hub filter matched
    (DESIGN §8.4), run by the worker in chunks (operations/batches.py).

    `items` is the snapshot of the matched process ids, taken when the batch is created, in
    the order they are applied; `position` is how many of them are done (applied, skipped or
    failed), advanced in the transaction of each chunk's changes, so a worker killed
    mid-batch resumes exactly after the last committed chunk. `errors`: the first 100
    failures, `{"process_id", "code", "detail"}`."""

    id = PrefixedIdField(prefix="batch")
    action = models.CharField(max_length=20)
    filter = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="")
    state = models.CharField(max_length=20, choices=BatchState.choices,
                             default=BatchState.QUEUED)
    items = models.JSONField(default=list, blank=True)
    position = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=300)
    created_by_name = models.CharField(max_length=200, blank=True, default="")
    # The creator's rights when the batch was made (API scopes), checked per item as the
    # one-process control would check them.
    created_scopes = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="batch_tenant_created"),
            models.Index(fields=["tenant", "state"], name="batch_tenant_state"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=list(BatchState.values)),
                                   name="batch_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.action} of {self.matched} ({self.state})"
