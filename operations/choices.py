"""Status enums and transition tables for every process record (DESIGN §5.1).

Each process type has ONE `StateMachine`: its TextChoices (lowercase values), its transition
table (from → the states it may move to), its final states, and the operator controls, each a
named move to one target status from some of the states the table allows. Every path that
changes a process (its own endpoint, a hub control, an admin action, a sweep) checks the same
machine, and `allowed_actions` is read from it. Models put a CheckConstraint on the column
from `values`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from django.db import models

from agent33.errors import StateConflict

__all__ = [
    "BUDGET_ACTIVE",
    "BUDGET_MACHINE",
    "BUDGET_TERMINAL",
    "BUDGET_TRANSITIONS",
    "CONTROL_ACTIONS",
    "INTAKE_ACTIVE",
    "INTAKE_DECLINE_CLOSED",
    "INTAKE_MACHINE",
    "INTAKE_TERMINAL",
    "INTAKE_TRANSITIONS",
    "TRACE_ACTIVE",
    "TRACE_MACHINE",
    "TRACE_TERMINAL",
    "TRACE_TRANSITIONS",
    "WORKFLOW_ACTIVE",
    "WORKFLOW_MACHINE",
    "WORKFLOW_TERMINAL",
    "WORKFLOW_TRANSITIONS",
    "BudgetStatus",
    "ChangeCause",
    "ChangePath",
    "ControlActionChoice",
    "ControlRule",
    "HistoryAction",
    "IntakeStatus",
    "ProcessType",
    "ResearchType",
    "StateMachine",
    "TraceCompletionStatus",
    "TraceStatus",
    "Urgency",
    "WorkflowRunStatus",
    "WorkflowStartStatus",
]


class ProcessType(models.TextChoices):
    """The hub's `type` values. Multimodal requests belong to the multimodal app; the value is
    listed here because the hub contract names it, not because operations owns the model."""

    TRACE = "trace", "Trace"
    AUTONOMY_BUDGET = "autonomy_budget", "Autonomy budget"
    IMPROVEMENT_INTAKE = "improvement_intake", "Improvement intake"
    WORKFLOW = "workflow", "Workflow run"
    MULTIMODAL_REQUEST = "multimodal_request", "Multimodal request"


class ControlActionChoice(models.TextChoices):
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    CANCEL = "cancel", "Cancel"


CONTROL_ACTIONS: tuple[str, ...] = tuple(ControlActionChoice.values)


class HistoryAction(models.TextChoices):
    """What a status change was, as a process's history records it: an operator's move that
    equals a control (pause, resume, cancel: whichever path made it), an approval, a
    multimodal request claimed for execution, a budget the sweep expired, or any other move
    the table allows (before → after says which)."""

    PAUSE = ControlActionChoice.PAUSE.value, ControlActionChoice.PAUSE.label
    RESUME = ControlActionChoice.RESUME.value, ControlActionChoice.RESUME.label
    CANCEL = ControlActionChoice.CANCEL.value, ControlActionChoice.CANCEL.label
    APPROVE = "approve", "Approve"
    EXECUTE = "execute", "Execute"
    EXPIRE = "expire", "Expire"
    MOVE = "move", "Move"


class ChangeCause(models.TextChoices):
    """Why a status changed (DESIGN §8.1)."""

    OPERATOR = "operator", "Operator"  # someone acting on the process from outside
    PROCESS = "process", "Process"  # the process reporting its own progress
    SYSTEM = "system", "System"  # the service's own jobs (expiry sweep, reaper)


class ChangePath(models.TextChoices):
    """Where a status change came in."""

    API = "api", "API"
    HUB = "hub", "Hub"
    ADMIN = "admin", "Admin"
    BATCH = "batch", "Batch"
    SWEEP = "sweep", "Sweep"
    WORKER = "worker", "Worker"


@dataclass(frozen=True)
class ControlRule:
    """An operator control: a move to `target` from `sources`, each of which the machine's
    table must allow to reach `target` (StateMachine refuses a rule that would not)."""

    target: str
    sources: frozenset[str]


@dataclass(frozen=True)
class StateMachine:
    """One process type's states, moves and controls: the only rule set for that type."""

    label: str  # for messages: "workflow run"
    states: tuple[str, ...]
    transitions: Mapping[str, frozenset[str]]
    terminal: frozenset[str]
    controls: Mapping[str, ControlRule] = field(default_factory=dict)
    # The move that approves a process (a budget's draft or pending approval → active): it
    # needs its own right and records the approver.
    approval: ControlRule | None = None
    # True when every move is a person's decision (intake triage) rather than the process
    # reporting its own progress.
    moves_are_decisions: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.transitions) ^ set(self.states)
        if unknown:
            raise ValueError(f"{self.label}: transition table and states differ on {unknown}")
        for action, rule in self.controls.items():
            if action not in CONTROL_ACTIONS:
                raise ValueError(f"{self.label}: unknown control {action!r}")
            forbidden = {s for s in rule.sources if not self.allows(s, rule.target)}
            if forbidden:
                raise ValueError(
                    f"{self.label}: control {action!r} would move {sorted(forbidden)} to "
                    f"{rule.target!r}, which the transition table forbids"
                )
        if self.approval is not None and not all(
            self.allows(source, self.approval.target) for source in self.approval.sources
        ):
            raise ValueError(f"{self.label}: the approval leaves the transition table")

    @cached_property  # the hub asks it of every row it lists
    def active(self) -> tuple[str, ...]:
        """The states that are not final (the hub lists these when no status is asked for)."""
        return tuple(state for state in self.states if state not in self.terminal)

    def allows(self, current: str, target: str) -> bool:
        return target in self.transitions.get(current, ())

    def sources_of(self, target: str) -> tuple[str, ...]:
        """The states from which `target` may be reached (a conditional UPDATE's filter)."""
        return tuple(state for state in self.states if self.allows(state, target))

    def allowed_actions(self, current: str) -> tuple[str, ...]:
        return tuple(action for action, rule in self.controls.items() if current in rule.sources)

    def control_for(self, current: str, target: str) -> str | None:
        """The control that `current → target` equals, whatever path makes it, or None."""
        for action, rule in self.controls.items():
            if rule.target == target and current in rule.sources:
                return action
        return None

    def is_approval(self, current: str, target: str) -> bool:
        return (self.approval is not None and self.approval.target == target
                and current in self.approval.sources)

    def cause_of(self, current: str, target: str) -> str:
        """`operator` for a control, an approval or a decision; `process` for the process's
        own progress (a run finishing, a trace completing, a budget submitted)."""
        if (self.moves_are_decisions or self.control_for(current, target)
                or self.is_approval(current, target)):
            return ChangeCause.OPERATOR
        return ChangeCause.PROCESS

    def unsupported(self, action: str) -> StateConflict:
        """The 409 for a control this type does not have (every source says it alike)."""
        article = "An" if self.label[:1] in "aeiou" else "A"
        supported = ", ".join(self.controls) or "none"
        return StateConflict(
            f"{article} {self.label} does not support '{action}' (supported controls: "
            f"{supported}).",
            code="unsupported_action",
        )


# --- Traces -----------------------------------------------------------------------------


class TraceStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    ESCALATED = "escalated", "Escalated"


TRACE_TERMINAL: frozenset[str] = frozenset(
    {
        TraceStatus.COMPLETED,
        TraceStatus.FAILED,
        TraceStatus.TIMEOUT,
        TraceStatus.CANCELLED,
        TraceStatus.ESCALATED,
    }
)


class TraceCompletionStatus(models.TextChoices):
    """The statuses `POST /traces/{id}/complete` accepts: the terminal ones."""

    COMPLETED = TraceStatus.COMPLETED.value, TraceStatus.COMPLETED.label
    FAILED = TraceStatus.FAILED.value, TraceStatus.FAILED.label
    TIMEOUT = TraceStatus.TIMEOUT.value, TraceStatus.TIMEOUT.label
    CANCELLED = TraceStatus.CANCELLED.value, TraceStatus.CANCELLED.label
    ESCALATED = TraceStatus.ESCALATED.value, TraceStatus.ESCALATED.label


TRACE_TRANSITIONS: dict[str, frozenset[str]] = {
    TraceStatus.RUNNING: TRACE_TERMINAL,
    **{status: frozenset() for status in TRACE_TERMINAL},
}


# --- Autonomy budgets -------------------------------------------------------------------


class BudgetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    COMPLETED = "completed", "Completed"


BUDGET_TRANSITIONS: dict[str, frozenset[str]] = {
    BudgetStatus.DRAFT: frozenset({BudgetStatus.PENDING_APPROVAL, BudgetStatus.ACTIVE}),
    BudgetStatus.PENDING_APPROVAL: frozenset({BudgetStatus.ACTIVE, BudgetStatus.REJECTED}),
    BudgetStatus.ACTIVE: frozenset(
        {BudgetStatus.SUSPENDED, BudgetStatus.EXPIRED, BudgetStatus.COMPLETED}
    ),
    BudgetStatus.SUSPENDED: frozenset({BudgetStatus.ACTIVE, BudgetStatus.EXPIRED}),
    BudgetStatus.REJECTED: frozenset(),
    BudgetStatus.EXPIRED: frozenset(),
    BudgetStatus.COMPLETED: frozenset(),
}
BUDGET_TERMINAL: frozenset[str] = frozenset(
    {BudgetStatus.REJECTED, BudgetStatus.EXPIRED, BudgetStatus.COMPLETED}
)


# --- Improvement intakes ----------------------------------------------------------------


class IntakeStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    TRIAGED = "triaged", "Triaged"
    ANALYZING = "analyzing", "Analyzing"
    ACCEPTED = "accepted", "Accepted"
    DEFERRED = "deferred", "Deferred"
    REJECTED = "rejected", "Rejected"
    TRACKED = "tracked", "Tracked"


INTAKE_TRANSITIONS: dict[str, frozenset[str]] = {
    IntakeStatus.SUBMITTED: frozenset({IntakeStatus.TRIAGED}),
    IntakeStatus.TRIAGED: frozenset({IntakeStatus.ANALYZING}),
    IntakeStatus.ANALYZING: frozenset(
        {IntakeStatus.ACCEPTED, IntakeStatus.DEFERRED, IntakeStatus.REJECTED}
    ),
    IntakeStatus.ACCEPTED: frozenset({IntakeStatus.TRACKED}),
    IntakeStatus.DEFERRED: frozenset({IntakeStatus.TRIAGED}),
    IntakeStatus.REJECTED: frozenset(),
    IntakeStatus.TRACKED: frozenset(),
}
# Deferred intakes come back to triage, so only rejected and tracked are final.
INTAKE_TERMINAL: frozenset[str] = frozenset({IntakeStatus.REJECTED, IntakeStatus.TRACKED})
# A decline's intake stops blocking a new one once it is decided: accepted (the work is taken
# on), rejected or tracked. Submitted, triaged, analyzing and deferred intakes are still open.
INTAKE_DECLINE_CLOSED: frozenset[str] = INTAKE_TERMINAL | {IntakeStatus.ACCEPTED}


class ResearchType(models.TextChoices):
    EXTERNAL = "external", "External"
    INTERNAL = "internal", "Internal"
    COMPETITIVE = "competitive", "Competitive"
    USER = "user", "User"
    TECHNICAL = "technical", "Technical"


class Urgency(models.TextChoices):
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


# --- Workflow runs ----------------------------------------------------------------------


class WorkflowRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class WorkflowStartStatus(models.TextChoices):
    """The states a run may be created in."""

    QUEUED = WorkflowRunStatus.QUEUED.value, WorkflowRunStatus.QUEUED.label
    RUNNING = WorkflowRunStatus.RUNNING.value, WorkflowRunStatus.RUNNING.label


WORKFLOW_TRANSITIONS: dict[str, frozenset[str]] = {
    WorkflowRunStatus.QUEUED: frozenset({WorkflowRunStatus.RUNNING, WorkflowRunStatus.CANCELLED}),
    WorkflowRunStatus.RUNNING: frozenset(
        {
            WorkflowRunStatus.COMPLETED,
            WorkflowRunStatus.FAILED,
            WorkflowRunStatus.CANCELLED,
            WorkflowRunStatus.PAUSED,
        }
    ),
    WorkflowRunStatus.PAUSED: frozenset({WorkflowRunStatus.RUNNING}),
    WorkflowRunStatus.COMPLETED: frozenset(),
    WorkflowRunStatus.FAILED: frozenset(),
    WorkflowRunStatus.CANCELLED: frozenset(),
}
WORKFLOW_TERMINAL: frozenset[str] = frozenset(
    {WorkflowRunStatus.COMPLETED, WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED}
)


# --- the machines: one per process type -------------------------------------------------

_PAUSE, _RESUME, _CANCEL = (ControlActionChoice.PAUSE.value, ControlActionChoice.RESUME.value,
                            ControlActionChoice.CANCEL.value)

TRACE_MACHINE = StateMachine(
    label="trace",
    states=tuple(TraceStatus.values),
    transitions=TRACE_TRANSITIONS,
    terminal=TRACE_TERMINAL,
    controls={
        _CANCEL: ControlRule(TraceStatus.CANCELLED, frozenset({TraceStatus.RUNNING})),
    },
)

BUDGET_MACHINE = StateMachine(
    label="autonomy budget",
    states=tuple(BudgetStatus.values),
    transitions=BUDGET_TRANSITIONS,
    terminal=BUDGET_TERMINAL,
    controls={
        _PAUSE: ControlRule(BudgetStatus.SUSPENDED, frozenset({BudgetStatus.ACTIVE})),
        # Resume undoes a pause only: activating a draft or approving a pending budget are
        # the owner's and the approver's decisions, not an operator's.
        _RESUME: ControlRule(BudgetStatus.ACTIVE, frozenset({BudgetStatus.SUSPENDED})),
        _CANCEL: ControlRule(
            BudgetStatus.EXPIRED, frozenset({BudgetStatus.ACTIVE, BudgetStatus.SUSPENDED})
        ),
    },
    approval=ControlRule(
        BudgetStatus.ACTIVE, frozenset({BudgetStatus.DRAFT, BudgetStatus.PENDING_APPROVAL})
    ),
)

# Intakes move by triage decisions (their transition endpoint, the admin), not by controls.
INTAKE_MACHINE = StateMachine(
    label="improvement intake",
    states=tuple(IntakeStatus.values),
    transitions=INTAKE_TRANSITIONS,
    terminal=INTAKE_TERMINAL,
    moves_are_decisions=True,
)

WORKFLOW_MACHINE = StateMachine(
    label="workflow run",
    states=tuple(WorkflowRunStatus.values),
    transitions=WORKFLOW_TRANSITIONS,
    terminal=WORKFLOW_TERMINAL,
    controls={
        _PAUSE: ControlRule(WorkflowRunStatus.PAUSED, frozenset({WorkflowRunStatus.RUNNING})),
        # Resume undoes a pause only: starting a queued run is the runtime's move.
        _RESUME: ControlRule(WorkflowRunStatus.RUNNING, frozenset({WorkflowRunStatus.PAUSED})),
        _CANCEL: ControlRule(
            WorkflowRunStatus.CANCELLED,
            frozenset({WorkflowRunStatus.QUEUED, WorkflowRunStatus.RUNNING}),
        ),
    },
)

# The states the hub lists when no status is asked for (the models' partial indexes too).
TRACE_ACTIVE = TRACE_MACHINE.active
BUDGET_ACTIVE = BUDGET_MACHINE.active
INTAKE_ACTIVE = INTAKE_MACHINE.active
WORKFLOW_ACTIVE = WORKFLOW_MACHINE.active
