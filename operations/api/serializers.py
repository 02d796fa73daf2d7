"""Input serializers validate request bodies; output serializers render records.

Ids, tenant, status and timestamps are read-only everywhere: the tenant comes from the token,
status only moves through the transition and control endpoints.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agent33.api.datetimes import UtcDateTimeField

from ..choices import (
    BudgetStatus,
    ChangeCause,
    ChangePath,
    ControlActionChoice,
    HistoryAction,
    IntakeStatus,
    ResearchType,
    TraceCompletionStatus,
    Urgency,
    WorkflowRunStatus,
    WorkflowStartStatus,
)
from ..models import AutonomyBudget, BatchState, ImprovementIntake, Trace, TraceStep, WorkflowRun
from ..selectors import HISTORY_LIMIT

__all__ = [
    "AutonomyBudgetCreateSerializer",
    "AutonomyBudgetSerializer",
    "BatchCreateSerializer",
    "BatchMatchedSerializer",
    "BatchSerializer",
    "BudgetTransitionSerializer",
    "ControlRequestSerializer",
    "HubSerializer",
    "ImprovementIntakeCreateSerializer",
    "ImprovementIntakeSerializer",
    "IntakeTransitionSerializer",
    "ProcessDetailSerializer",
    "TraceCompleteSerializer",
    "TraceCreateSerializer",
    "TraceDetailSerializer",
    "TraceSerializer",
    "TraceStepCreateSerializer",
    "TraceStepSerializer",
    "WorkflowRunCreateSerializer",
    "WorkflowRunSerializer",
    "WorkflowRunTransitionSerializer",
]

MAX_ACTIONS_PER_STEP = 1000
MAX_TEXT = 20_000
BIGINT_MAX = 2**63 - 1


def _reject_nul(value: Any) -> None:
    """PostgreSQL's jsonb cannot store U+0000; refuse it as bad input instead of a 500.

    Iterative, so deeply nested documents cannot exhaust the stack.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise serializers.ValidationError("Strings may not contain NUL characters.")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _text(max_length: int = 200, **kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, allow_blank=True, required=False, default="", **kwargs
    )


# --- traces -----------------------------------------------------------------------------


class TraceStepSerializer(serializers.ModelSerializer):
    trace_id = serializers.CharField(read_only=True)

    class Meta:
        model = TraceStep
        fields = ["trace_id", "step_id", "actions", "action_count", "completed_at"]
        read_only_fields = fields


class TraceSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    step_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Trace
        fields = [
            "id",
            "tenant_id",
            "task_id",
            "agent_id",
            "session_id",
            "run_id",
            "status",
            "failure_code",
            "failure_message",
            "started_at",
            "completed_at",
            "duration_ms",
            "updated_at",
            "step_count",
        ]
        read_only_fields = fields


class TraceDetailSerializer(TraceSerializer):
    step_count = serializers.SerializerMethodField()
    steps = TraceStepSerializer(many=True, read_only=True)

    def get_step_count(self, obj) -> int:
        return len(obj.steps.all())  # prefetched on retrieve

    class Meta(TraceSerializer.Meta):
        fields = [*TraceSerializer.Meta.fields, "steps"]
        read_only_fields = fields


class TraceCreateSerializer(serializers.Serializer):
    task_id = _text()
    agent_id = _text()
    session_id = _text()
    run_id = _text()


class TraceStepCreateSerializer(serializers.Serializer):
    step_id = serializers.CharField(max_length=200)
    actions = serializers.ListField(
        child=serializers.JSONField(),
        max_length=MAX_ACTIONS_PER_STEP,
        required=False,
        default=list,
        help_text=f"The step's actions as sent by the runtime (at most {MAX_ACTIONS_PER_STEP}).",
    )
    completed_at = UtcDateTimeField(
        required=False, allow_null=True, default=None, help_text="Defaults to now."
    )

    def validate_actions(self, value):
        _reject_nul(value)
        return value


class TraceCompleteSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=TraceCompletionStatus.choices,
        help_text="'cancelled' equals the cancel control and needs workflows:execute.",
    )
    failure_code = _text(max_length=100)
    failure_message = _text(max_length=MAX_TEXT)


# --- budgets ----------------------------------------------------------------------------


class AutonomyBudgetSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)

    class Meta:
        model = AutonomyBudget
        fields = [
            "id",
            "tenant_id",
            "task_id",
            "agent_id",
            "limits",
            "approved_by",
            "expires_at",
            "status",
            "started_at",
            "updated_at",
        ]
        read_only_fields = fields


class AutonomyBudgetCreateSerializer(serializers.Serializer):
    task_id = _text()
    agent_id = _text()
    limits = serializers.DictField(required=False, default=dict)
    approved_by = _text(
        help_text="Not settable: the approver is whoever approves the budget (a move to "
        "'active' with the budgets:approve scope). Empty is ignored; anything else is a 400.",
    )
    expires_at = UtcDateTimeField(required=False, allow_null=True, default=None)

    def validate_limits(self, value):
        _reject_nul(value)
        return value

    def validate_approved_by(self, value):
        if value:
            raise serializers.ValidationError(
                "approved_by is set by the approval itself: move the budget to 'active' with "
                "a token holding budgets:approve, and that token is recorded as approver."
            )
        return value

    def validate(self, attrs):
        attrs.pop("approved_by", None)
        return attrs


# --- intakes ----------------------------------------------------------------------------


class ImprovementIntakeSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)

    class Meta:
        model = ImprovementIntake
        fields = [
            "id",
            "tenant_id",
            "title",
            "summary",
            "source",
            "research_type",
            "urgency",
            "status",
            "started_at",
            "updated_at",
        ]
        read_only_fields = fields


class ImprovementIntakeCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    summary = _text(max_length=MAX_TEXT)
    source = _text()
    research_type = serializers.ChoiceField(
        choices=ResearchType.choices, required=False, default=ResearchType.INTERNAL
    )
    urgency = serializers.ChoiceField(
        choices=Urgency.choices, required=False, default=Urgency.MEDIUM
    )


# --- workflow runs ----------------------------------------------------------------------


class WorkflowRunSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "tenant_id",
            "workflow_name",
            "trigger_type",
            "status",
            "started_at",
            "duration_ms",
            "error",
            "job_id",
            "updated_at",
        ]
        read_only_fields = fields


class WorkflowRunCreateSerializer(serializers.Serializer):
    workflow_name = serializers.CharField(max_length=200)
    trigger_type = _text(max_length=100)
    started_at = UtcDateTimeField(
        required=False, allow_null=True, default=None, help_text="Defaults to now."
    )
    status = serializers.ChoiceField(
        choices=WorkflowStartStatus.choices, required=False, default=WorkflowStartStatus.QUEUED
    )
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=BIGINT_MAX, required=False, allow_null=True, default=None
    )
    error = _text(max_length=MAX_TEXT)
    job_id = _text()


# --- transitions and controls -----------------------------------------------------------


def _reason():
    return serializers.CharField(
        max_length=2000, allow_blank=True, required=False, default="",
        help_text="Optional: why, kept in the process's history.",
    )


class BudgetTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=BudgetStatus.choices,
        help_text="Moves that equal a control (suspended, expired, back to active from "
        "suspended) need workflows:execute; approving (draft or pending_approval → active) "
        "needs budgets:approve and records the caller as approved_by.",
    )
    reason = _reason()


class IntakeTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=IntakeStatus.choices)
    reason = _reason()


class WorkflowRunTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=WorkflowRunStatus.choices,
        help_text="Moves that equal a control (paused, cancelled, running from paused) need "
        "workflows:execute, as on /control.",
    )
    reason = _reason()
    error = serializers.CharField(
        max_length=MAX_TEXT, allow_blank=True, required=False,
        help_text="Optional: the run's error message (for example when it fails).",
    )
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=BIGINT_MAX, required=False,
        help_text="Optional; computed from started_at when a run finishes without one.",
    )


class ControlRequestSerializer(serializers.Serializer):
    action = serializers.CharField(
        max_length=50, help_text=f"One of: {', '.join(ControlActionChoice.values)}."
    )
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


# --- hub (documentation of the selector's JSON) -----------------------------------------


class HubProcessSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(
        choices=[
            "trace", "autonomy_budget", "improvement_intake", "workflow", "multimodal_request",
        ]
    )
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    name = serializers.CharField()
    metadata = serializers.DictField(help_text="Always has tenant_id, plus the type's main fields.")
    allowed_actions = serializers.ListField(
        child=serializers.ChoiceField(choices=ControlActionChoice.values)
    )


class HubSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    active_count = serializers.IntegerField(
        help_text="How many of the listed processes are not finished."
    )
    processes = HubProcessSerializer(many=True)


class ControlHistorySerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=HistoryAction.values,
        help_text="pause, resume, cancel: a move that equals that control (on any path); "
        "approve: a budget's approval; execute: a multimodal request claimed for execution; "
        "move: any other move (state_before and state_after say which).",
    )
    reason = serializers.CharField()
    actor = serializers.CharField(
        help_text="token:<prefix>, user:<username> or system:<job>."
    )
    state_before = serializers.CharField()
    state_after = serializers.CharField()
    created_at = serializers.DateTimeField()


class HistoryEntrySerializer(ControlHistorySerializer):
    actor_name = serializers.CharField(help_text="The token's name (or the staff member's).")
    cause = serializers.ChoiceField(
        choices=ChangeCause.values,
        help_text="operator: someone acting on the process from outside; process: the "
        "process reporting its own progress; system: the service's own jobs.",
    )
    path = serializers.ChoiceField(choices=ChangePath.values)
    request_id = serializers.CharField(help_text="The X-Request-ID of the change ('' for jobs).")


class TraceActionSummarySerializer(serializers.Serializer):
    step_id = serializers.CharField()
    action_count = serializers.IntegerField()
    completed_at = serializers.DateTimeField(allow_null=True)


class ProcessDetailSerializer(HubProcessSerializer):
    history = HistoryEntrySerializer(
        many=True, help_text=f"Every status change, newest first (at most {HISTORY_LIMIT})."
    )
    control_history = ControlHistorySerializer(
        many=True, help_text="Deprecated alias of history (oldest first, as before); removed "
        "in the next release.",
    )
    actions = TraceActionSummarySerializer(
        many=True, required=False, help_text="Traces only: one entry per step."
    )
    limits = serializers.DictField(required=False, help_text="Autonomy budgets only.")
    summary = serializers.CharField(required=False, help_text="Improvement intakes only.")


# --- batches ----------------------------------------------------------------------------


class BatchFilterSerializer(serializers.Serializer):
    include = serializers.CharField(required=False, help_text="Comma-separated hub types "
                                    "(or a list); default: every type with the control.")
    status = serializers.CharField(required=False, help_text="One status (default: every "
                                   "not-finished one).")
    since = serializers.CharField(required=False, help_text="ISO 8601 on started_at (default: "
                                  "24 h ago; none when `ids` is given).")
    ids = serializers.ListField(child=serializers.CharField(), required=False,
                                help_text="Only these process ids (at most 10,000).")


class BatchCreateSerializer(serializers.Serializer):
    """Documentation only: operations.batches validates (every bad value a 400 naming it)."""

    action = serializers.ChoiceField(choices=ControlActionChoice.choices)
    filter = BatchFilterSerializer(required=False)
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    dry_run = serializers.BooleanField(required=False, default=False)


class BatchMatchedSerializer(serializers.Serializer):
    matched = serializers.IntegerField()


class BatchErrorSerializer(serializers.Serializer):
    process_id = serializers.CharField()
    code = serializers.CharField()
    detail = serializers.CharField()


class BatchSerializer(serializers.Serializer):
    id = serializers.CharField()
    tenant_id = serializers.CharField()
    action = serializers.ChoiceField(choices=ControlActionChoice.choices)
    filter = serializers.DictField()
    reason = serializers.CharField()
    state = serializers.ChoiceField(choices=BatchState.choices)
    matched = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    errors = BatchErrorSerializer(many=True)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
