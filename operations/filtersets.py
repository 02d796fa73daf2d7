"""List filters (django-filter). Querysets come from the view (tenant-scoped), never from here.

Every filter is declared explicitly: django-filter builds undeclared ones by running a query
through the model's default manager at import time, which the fail-closed tenant manager
(rightly) refuses outside a tenant scope.
"""

from __future__ import annotations

import django_filters as filters

from agent33.api.datetimes import UtcDateTimeFilter

from .choices import (
    BudgetStatus,
    IntakeStatus,
    ResearchType,
    TraceStatus,
    Urgency,
    WorkflowRunStatus,
)
from .models import AutonomyBudget, ImprovementIntake, Trace, WorkflowRun

__all__ = [
    "AutonomyBudgetFilterSet",
    "ImprovementIntakeFilterSet",
    "TraceFilterSet",
    "WorkflowRunFilterSet",
]


def _exact(field_name: str) -> filters.CharFilter:
    return filters.CharFilter(field_name=field_name, max_length=200)


class _StartedFilterSet(filters.FilterSet):
    started_after = UtcDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Started at or after (ISO 8601)"
    )
    started_before = UtcDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Started before (ISO 8601)"
    )


class TraceFilterSet(_StartedFilterSet):
    status = filters.ChoiceFilter(choices=TraceStatus.choices)
    task_id = _exact("task_id")
    agent_id = _exact("agent_id")
    session_id = _exact("session_id")
    run_id = _exact("run_id")

    class Meta:
        model = Trace
        fields = ["status", "task_id", "agent_id", "session_id", "run_id"]


class AutonomyBudgetFilterSet(_StartedFilterSet):
    status = filters.ChoiceFilter(choices=BudgetStatus.choices)
    task_id = _exact("task_id")
    agent_id = _exact("agent_id")

    class Meta:
        model = AutonomyBudget
        fields = ["status", "task_id", "agent_id"]


class ImprovementIntakeFilterSet(_StartedFilterSet):
    status = filters.ChoiceFilter(choices=IntakeStatus.choices)
    research_type = filters.ChoiceFilter(choices=ResearchType.choices)
    urgency = filters.ChoiceFilter(choices=Urgency.choices)
    source = _exact("source")

    class Meta:
        model = ImprovementIntake
        fields = ["status", "research_type", "urgency", "source"]


class WorkflowRunFilterSet(_StartedFilterSet):
    status = filters.ChoiceFilter(choices=WorkflowRunStatus.choices)
    workflow_name = _exact("workflow_name")
    trigger_type = _exact("trigger_type")
    job_id = _exact("job_id")

    class Meta:
        model = WorkflowRun
        fields = ["status", "workflow_name", "trigger_type", "job_id"]
