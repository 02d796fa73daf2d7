"""Factories for operations records. Children (steps) inherit their trace's tenant."""

from __future__ import annotations

import factory
from django.utils import timezone

from operations.models import (
    AutonomyBudget,
    ImprovementIntake,
    StatusChange,
    Trace,
    TraceStep,
    WorkflowRun,
)
from tests.factories.tenancy import TenantOwnedFactory


class TraceFactory(TenantOwnedFactory):
    class Meta:
        model = Trace

    task_id = factory.Sequence(lambda n: f"task-{n}")
    agent_id = "agent-1"
    status = "running"
    started_at = factory.LazyFunction(timezone.now)


class TraceStepFactory(TenantOwnedFactory):
    class Meta:
        model = TraceStep

    trace = factory.SubFactory(TraceFactory)
    tenant = factory.SelfAttribute("trace.tenant")
    step_id = factory.Sequence(lambda n: f"step-{n}")
    actions = factory.LazyFunction(lambda: [{"tool": "search"}, {"tool": "read"}])
    action_count = factory.LazyAttribute(lambda o: len(o.actions))


class AutonomyBudgetFactory(TenantOwnedFactory):
    class Meta:
        model = AutonomyBudget

    task_id = factory.Sequence(lambda n: f"budget-task-{n}")
    agent_id = "agent-1"
    limits = factory.LazyFunction(lambda: {"max_tool_calls": 10})
    status = "draft"
    started_at = factory.LazyFunction(timezone.now)


class ImprovementIntakeFactory(TenantOwnedFactory):
    class Meta:
        model = ImprovementIntake

    title = factory.Sequence(lambda n: f"Improvement {n}")
    research_type = "internal"
    urgency = "medium"
    status = "submitted"
    started_at = factory.LazyFunction(timezone.now)


class WorkflowRunFactory(TenantOwnedFactory):
    class Meta:
        model = WorkflowRun

    workflow_name = factory.Sequence(lambda n: f"workflow-{n}")
    trigger_type = "manual"
    status = "queued"
    started_at = factory.LazyFunction(timezone.now)


class StatusChangeFactory(TenantOwnedFactory):
    class Meta:
        model = StatusChange

    process_type = "workflow"
    process_id = factory.Sequence(lambda n: f"wfrun-{n:032x}")
    action = "pause"
    actor = "token:test"
    state_before = "running"
    state_after = "paused"
    cause = "operator"
    path = "hub"
