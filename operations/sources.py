"""The hub's process sources for operations' own records (see operations/hub.py).

`ModelProcessSource` is the reusable part: one `values()` query per hub read, a locked
one-step control, allowed actions from a control table. Other apps may subclass it for their
own models or implement the ProcessSource protocol from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone

from agent33.errors import StateConflict

from .choices import (
    BUDGET_ACTIVE,
    INTAKE_ACTIVE,
    TRACE_ACTIVE,
    WORKFLOW_ACTIVE,
    BudgetStatus,
    IntakeStatus,
    ProcessType,
    TraceStatus,
    WorkflowRunStatus,
)
from .hub import ControlOutcome, ProcessDetail, ProcessRow, iso, register_process_source
from .models import AutonomyBudget, ImprovementIntake, Trace, TraceStep, WorkflowRun
from .services import control_apply, lock_for_transition

__all__ = [
    "BudgetSource",
    "ControlRule",
    "IntakeSource",
    "ModelProcessSource",
    "TraceSource",
    "WorkflowRunSource",
    "register_builtin_sources",
]


@dataclass(frozen=True)
class ControlRule:
    """A control moves a process from any of `sources` to `target`."""

    sources: frozenset[str]
    target: str


class ModelProcessSource:
    model: ClassVar[type[models.Model]]
    type_name: str
    include_key: str
    id_prefix: str
    statuses: tuple[str, ...]
    active_statuses: tuple[str, ...]
    label: str  # for messages: "workflow run"
    controls: ClassVar[Mapping[str, ControlRule]] = {}
    # Columns read for a hub row (besides id, tenant_id, status, started_at).
    row_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.controls)

    def __init__(self) -> None:
        # Looked up for every hub row, so computed once per status.
        self._allowed_by_status = {
            str(status): tuple(a for a, rule in self.controls.items() if status in rule.sources)
            for status in self.statuses
        }

    def allowed_actions(self, status: str) -> tuple[str, ...]:
        return self._allowed_by_status.get(status, ())

    # --- reading ------------------------------------------------------------------------

    def name_of(self, values: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def metadata_of(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {field: values[field] for field in self.row_fields}

    def _row(self, values: Mapping[str, Any]) -> ProcessRow:
        return ProcessRow(
            id=values["id"],
            type=self.type_name,
            status=values["status"],
            started_at=values["started_at"],
            name=self.name_of(values),
            metadata={"tenant_id": values["tenant_id"], **self.metadata_of(values)},
            allowed_actions=self.allowed_actions(values["status"]),
        )

    def _columns(self) -> tuple[str, ...]:
        return ("id", "tenant_id", "status", "started_at", *self.row_fields)

    def list(
        self, *, scope: Any, since: datetime, statuses: tuple[str, ...], limit: int
    ) -> list[ProcessRow]:
        # The default manager already narrows to `scope` (the current tenant scope); the
        # filter + order + limit match the (tenant, status, started_at) index and the partial
        # "active" index, so this reads about `limit` index entries however big the table.
        rows = (
            self.model.objects.filter(status__in=list(statuses), started_at__gte=since)
            .order_by("-started_at", "-id")
            .values(*self._columns())[:limit]
        )
        return [self._row(values) for values in rows]

    def detail_extra(self, obj: models.Model) -> dict[str, Any]:
        return {}

    def _detail(self, obj: models.Model) -> ProcessDetail:
        values = {column: getattr(obj, column) for column in self._columns()}
        return ProcessDetail(
            row=self._row(values), tenant_id=obj.tenant_id, extra=self.detail_extra(obj)
        )

    def get(self, process_id: str) -> ProcessDetail | None:
        obj = self.model.objects.filter(pk=process_id).first()
        return None if obj is None else self._detail(obj)

    # --- controlling --------------------------------------------------------------------

    def control_changes(self, obj: models.Model, action: str, reason: str) -> dict[str, Any]:
        """Fields besides status that a control sets (a cancelled trace's failure code)."""
        return {}

    def control(
        self, process_id: str, *, action: str, reason: str, actor: str
    ) -> ControlOutcome:
        # Runs inside process_control's transaction (select_for_update refuses to run
        # outside one); no savepoint of its own, as a failure here aborts the whole control.
        obj = lock_for_transition(self.model, process_id)
        rule = self.controls.get(action)
        if rule is None:
            supported = ", ".join(self.controls) or "none"
            raise StateConflict(
                f"A {self.label} does not support '{action}' (supported controls: "
                f"{supported}).",
                code="unsupported_action",
            )
        current = obj.status
        if current not in rule.sources:
            needed = " or ".join(f"'{s}'" for s in sorted(rule.sources))
            raise StateConflict(
                f"Cannot {action} {self.label} {process_id}: it is '{current}', and "
                f"{action} needs {needed}.",
                code="invalid_transition",
            )
        changes = {"status": rule.target, **self.control_changes(obj, action, reason)}
        history = control_apply(
            obj,
            changes,
            process_type=self.type_name,
            action=action,
            reason=reason,
            actor=actor,
            state_before=current,
        )
        return ControlOutcome(
            tenant_id=obj.tenant_id,
            state_before=current,
            state_after=rule.target,
            detail=self._detail(obj),
            history=history,
        )


class TraceSource(ModelProcessSource):
    model = Trace
    type_name = ProcessType.TRACE.value
    include_key = "traces"
    id_prefix = "trace-"
    statuses = tuple(TraceStatus.values)
    active_statuses = TRACE_ACTIVE
    label = "trace"
    controls = {
        "cancel": ControlRule(frozenset({TraceStatus.RUNNING}), TraceStatus.CANCELLED),
    }
    row_fields = ("task_id", "agent_id", "session_id", "run_id")

    def name_of(self, values):
        return values["task_id"] or values["id"]

    def metadata_of(self, values):
        return {k: values[k] for k in ("agent_id", "session_id", "run_id")}

    def detail_extra(self, obj):
        steps = TraceStep.objects.filter(tenant_id=obj.tenant_id, trace_id=obj.pk).values_list(
            "step_id", "action_count", "completed_at"
        )
        return {
            "task_id": obj.task_id,
            "failure_code": obj.failure_code,
            "failure_message": obj.failure_message,
            "completed_at": iso(obj.completed_at),
            "actions": [
                {"step_id": step_id, "action_count": count, "completed_at": iso(completed_at)}
                for step_id, count, completed_at in steps
            ],
        }

    def control_changes(self, obj, action, reason):
        # Same failure code as the Stage 1 hub used for operator cancellations.
        return {
            "completed_at": timezone.now(),
            "failure_code": "F-CAN",
            "failure_message": reason or "Cancelled via the operations hub.",
        }


class BudgetSource(ModelProcessSource):
    model = AutonomyBudget
    type_name = ProcessType.AUTONOMY_BUDGET.value
    include_key = "budgets"
    id_prefix = "budget-"
    statuses = tuple(BudgetStatus.values)
    active_statuses = BUDGET_ACTIVE
    label = "autonomy budget"
    controls = {
        "pause": ControlRule(frozenset({BudgetStatus.ACTIVE}), BudgetStatus.SUSPENDED),
        "resume": ControlRule(frozenset({BudgetStatus.SUSPENDED}), BudgetStatus.ACTIVE),
        "cancel": ControlRule(
            frozenset({BudgetStatus.ACTIVE, BudgetStatus.SUSPENDED}), BudgetStatus.EXPIRED
        ),
    }
    row_fields = ("task_id", "agent_id", "approved_by", "expires_at")

    def name_of(self, values):
        return values["task_id"] or values["id"]

    def metadata_of(self, values):
        return {
            "agent_id": values["agent_id"],
            "approved_by": values["approved_by"],
            "expires_at": iso(values["expires_at"]),
        }

    def detail_extra(self, obj):
        return {"task_id": obj.task_id, "limits": obj.limits}


class IntakeSource(ModelProcessSource):
    model = ImprovementIntake
    type_name = ProcessType.IMPROVEMENT_INTAKE.value
    include_key = "improvements"
    id_prefix = "intake-"
    statuses = tuple(IntakeStatus.values)
    active_statuses = INTAKE_ACTIVE
    label = "improvement intake"
    controls = {}  # intakes move by triage decisions (the transition endpoint), not controls
    row_fields = ("title", "research_type", "urgency", "source")

    def name_of(self, values):
        return values["title"]

    def metadata_of(self, values):
        return {k: values[k] for k in ("research_type", "urgency", "source")}

    def detail_extra(self, obj):
        return {"summary": obj.summary}


class WorkflowRunSource(ModelProcessSource):
    model = WorkflowRun
    type_name = ProcessType.WORKFLOW.value
    include_key = "workflows"
    id_prefix = "wfrun-"
    statuses = tuple(WorkflowRunStatus.values)
    active_statuses = WORKFLOW_ACTIVE
    label = "workflow run"
    controls = {
        "pause": ControlRule(frozenset({WorkflowRunStatus.RUNNING}), WorkflowRunStatus.PAUSED),
        "resume": ControlRule(frozenset({WorkflowRunStatus.PAUSED}), WorkflowRunStatus.RUNNING),
        "cancel": ControlRule(
            frozenset({WorkflowRunStatus.QUEUED, WorkflowRunStatus.RUNNING}),
            WorkflowRunStatus.CANCELLED,
        ),
    }
    row_fields = ("workflow_name", "trigger_type", "duration_ms", "error", "job_id")

    def name_of(self, values):
        return values["workflow_name"]

    def metadata_of(self, values):
        return {k: values[k] for k in ("trigger_type", "duration_ms", "error", "job_id")}

    def control_changes(self, obj, action, reason):
        if action == "cancel" and obj.duration_ms is None:
            elapsed = timezone.now() - obj.started_at
            return {"duration_ms": max(0, int(elapsed.total_seconds() * 1000))}
        return {}


def register_builtin_sources() -> None:
    for source in (TraceSource(), BudgetSource(), IntakeSource(), WorkflowRunSource()):
        register_process_source(source)
