"""The hub's process sources for operations' own records (see operations/hub.py).

`ModelProcessSource` is the reusable part: one `values()` query per hub read, and controls
and allowed actions read from the type's one StateMachine (choices.py), applied through the
same transition service as the record endpoints (`services.transition_apply`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from agent33.errors import NotFound

from .choices import (
    BUDGET_MACHINE,
    INTAKE_MACHINE,
    TRACE_MACHINE,
    WORKFLOW_MACHINE,
    BudgetStatus,
    IntakeStatus,
    ProcessType,
    StateMachine,
)
from .hub import (
    AttentionItem,
    ProcessDetail,
    ProcessRow,
    iso,
    register_attention_item,
    register_process_source,
)
from .models import AutonomyBudget, ImprovementIntake, Trace, TraceStep, WorkflowRun
from .transitions import (
    Origin,
    StatusChanges,
    apply_status_changes,
    move_refusal,
    transition_apply,
)

__all__ = [
    "BudgetSource",
    "IntakeSource",
    "ModelProcessSource",
    "TraceSource",
    "WorkflowRunSource",
    "register_builtin_attention_items",
    "register_builtin_sources",
]


class ModelProcessSource:
    model: ClassVar[type[models.Model]]
    machine: ClassVar[StateMachine]
    type_name: str
    include_key: str
    id_prefix: str
    # Columns read for a hub row (besides id, tenant_id, status, started_at).
    row_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def statuses(self) -> tuple[str, ...]:
        return self.machine.states

    @property
    def active_statuses(self) -> tuple[str, ...]:
        return self.machine.active

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.machine.controls)

    def allowed_actions(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """The controls that would succeed on a row with these values: the machine's, less
        those a rule beyond the table refuses (an expired budget cannot resume)."""
        now = timezone.now()
        return tuple(
            action
            for action in self.machine.allowed_actions(values["status"])
            if move_refusal(self.model, values, self.machine.controls[action].target,
                            origin=None, now=now) is None
        )

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
            allowed_actions=self.allowed_actions(values),
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
            self.matching(since=since, statuses=statuses)
            .order_by("-started_at", "-id")
            .values(*self._columns())[:limit]
        )
        return [self._row(values) for values in rows]

    def rows(self, ids: list[str]) -> dict[str, ProcessRow]:
        """The hub rows of these processes of any tenant, by id, in one query: the live hub
        stream's broker reads each change once for every stream of its process and filters
        by each stream's scope itself (operations.stream)."""
        values = self.model.all_tenants.filter(pk__in=ids).values(*self._columns())
        return {row["id"]: self._row(row) for row in values}

    def matching(self, *, since: datetime, statuses: tuple[str, ...]) -> models.QuerySet:
        """Every process the hub's filter selects (no limit, no order): the hub lists from
        it and batches count and snapshot it (operations/batches.py), so both read one
        definition of a filter."""
        return self.model.objects.filter(status__in=list(statuses), started_at__gte=since)

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

    def control_changes(self, action: str, reason: str) -> dict[str, Any]:
        """Fields besides status that a control sets (a cancelled trace's failure code)."""
        return {}

    def control(
        self, process_id: str, *, action: str, reason: str, origin: Origin
    ) -> ProcessDetail:
        rule = self.machine.controls.get(action)
        if rule is None:
            if not self.model.objects.filter(pk=process_id).exists():  # another tenant's
                raise NotFound(f"Process {process_id} not found.")
            raise self.machine.unsupported(action)
        moved = transition_apply(
            self.model,
            process_id,
            target=rule.target,
            origin=origin,
            changes=self.control_changes(action, reason),
            reason=reason,
            move=action,
            only_from=rule.sources,
        )
        return self._detail(moved.obj)


    def control_many(
        self, pks: list[str], *, action: str, reason: str, origin: Origin
    ) -> StatusChanges:
        """`control` for many processes of this type at once (a batch's chunk): one locked
        read, one update and one history INSERT through the same status change and rules.
        Rows that may not move are in `refused`, absent ones in `skipped`."""
        rule = self.machine.controls[action]
        return apply_status_changes(
            self.model, pks, target=rule.target, origin=origin,
            changes=self.control_changes(action, reason), reason=reason, move=action,
            only_from=rule.sources,
        )


class TraceSource(ModelProcessSource):
    model = Trace
    machine = TRACE_MACHINE
    type_name = ProcessType.TRACE.value
    include_key = "traces"
    id_prefix = "trace-"
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

    def control_changes(self, action, reason):
        # Same failure code as the Stage 1 hub used for operator cancellations.
        return {
            "failure_code": "F-CAN",
            "failure_message": reason or "Cancelled via the operations hub.",
        }


class BudgetSource(ModelProcessSource):
    model = AutonomyBudget
    machine = BUDGET_MACHINE
    type_name = ProcessType.AUTONOMY_BUDGET.value
    include_key = "budgets"
    id_prefix = "budget-"
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
    machine = INTAKE_MACHINE
    type_name = ProcessType.IMPROVEMENT_INTAKE.value
    include_key = "improvements"
    id_prefix = "intake-"
    row_fields = ("title", "research_type", "urgency", "source")

    def name_of(self, values):
        return values["title"]

    def metadata_of(self, values):
        return {k: values[k] for k in ("research_type", "urgency", "source")}

    def detail_extra(self, obj):
        return {"summary": obj.summary}


class WorkflowRunSource(ModelProcessSource):
    model = WorkflowRun
    machine = WORKFLOW_MACHINE
    type_name = ProcessType.WORKFLOW.value
    include_key = "workflows"
    id_prefix = "wfrun-"
    row_fields = ("workflow_name", "trigger_type", "duration_ms", "error", "job_id")

    def name_of(self, values):
        return values["workflow_name"]

    def metadata_of(self, values):
        return {k: values[k] for k in ("trigger_type", "duration_ms", "error", "job_id")}


def register_builtin_sources() -> None:
    for source in (TraceSource(), BudgetSource(), IntakeSource(), WorkflowRunSource()):
        register_process_source(source)


def _waiting_in(model: type[models.Model], status: str, label: str) -> AttentionItem:
    """Processes of `model` waiting in `status` for a person (the (tenant, status, started_at)
    index counts them), linked to the admin list filtered the same way."""
    meta = model._meta
    return AttentionItem(
        key=f"{meta.model_name}-{status}",
        label=label,
        count=lambda: model.objects.filter(status=status).count(),
        list_url=lambda: reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        + "?" + urlencode({"status__exact": status}),
    )


def failed_jobs_item() -> AttentionItem:
    """Background jobs that used their last try (agent33.jobs), linked to the admin list of
    failed jobs: in the staff member's scope (superusers: every job; other staff: their
    tenants' jobs)."""
    from agent33.jobs.selectors import failed_jobs
    from agent33.tenancy.context import ALL_TENANTS, TenantSet, current_scope

    def count() -> int:
        scope = current_scope()
        if scope is ALL_TENANTS:
            return failed_jobs().count()
        return failed_jobs(scope if isinstance(scope, TenantSet) else [scope.pk]).count()

    return AttentionItem(
        key="jobs-failed", label="Background jobs failed", count=count,
        list_url=lambda: reverse("admin:django_tasks_database_dbtaskresult_changelist")
        + "?" + urlencode({"status__exact": "FAILED"}),
    )


def register_builtin_attention_items() -> None:
    register_attention_item(
        _waiting_in(ImprovementIntake, IntakeStatus.SUBMITTED, "Intakes waiting for triage")
    )
    register_attention_item(
        _waiting_in(AutonomyBudget, BudgetStatus.PENDING_APPROVAL, "Budgets pending approval")
    )
    register_attention_item(failed_jobs_item())
