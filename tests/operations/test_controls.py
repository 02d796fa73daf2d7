"""Process detail and operator controls (POST /v1/operations/processes/{id}/control)."""

from __future__ import annotations

import pytest

from operations import choices
from operations.models import AutonomyBudget, StatusChange, Trace, WorkflowRun
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    TraceStepFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def executor(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:execute", "workflows:read"],
                          name="ops-console")


def control(client, process_id, action, reason="because"):
    return client.post(
        f"/v1/operations/processes/{process_id}/control",
        {"action": action, "reason": reason},
        format="json",
    )


# (type, factory, model, {action: {state_before: state_after}}) per DESIGN §5.1.
ACTION_TABLE = [
    ("trace", TraceFactory, Trace, choices.TraceStatus.values,
     {"cancel": {"running": "cancelled"}}),
    ("autonomy_budget", AutonomyBudgetFactory, AutonomyBudget, choices.BudgetStatus.values,
     {"pause": {"active": "suspended"}, "resume": {"suspended": "active"},
      "cancel": {"active": "expired", "suspended": "expired"}}),
    ("workflow", WorkflowRunFactory, WorkflowRun, choices.WorkflowRunStatus.values,
     {"pause": {"running": "paused"}, "resume": {"paused": "running"},
      "cancel": {"queued": "cancelled", "running": "cancelled"}}),
]


@pytest.mark.parametrize(("type_name", "factory", "model", "statuses", "table"), ACTION_TABLE,
                         ids=[row[0] for row in ACTION_TABLE])
def test_every_action_from_every_state(executor, tenant_a, type_name, factory, model, statuses,
                                       table):
    for action in choices.CONTROL_ACTIONS:
        for state in statuses:
            obj = factory(tenant=tenant_a, status=state)
            response = control(executor, obj.pk, action)
            stored = model.all_tenants.get(pk=obj.pk).status
            records = StatusChange.all_tenants.filter(process_id=obj.pk)
            expected = table.get(action, {}).get(state)
            if expected is not None:
                assert response.status_code == 200, (action, state, response.content)
                body = response.json()
                assert body["status"] == expected == stored
                assert body["type"] == type_name
                record = records.get()
                assert (record.action, record.state_before, record.state_after) == (
                    action, state, expected
                )
                assert record.tenant_id == tenant_a.slug
                assert record.actor.startswith("token:a33_")
                assert (record.actor_name, record.cause, record.path) == (
                    "ops-console", "operator", "hub")
                assert record.reason == "because"
                assert body["history"][0]["action"] == action
                assert body["control_history"][-1]["action"] == action
            else:
                assert response.status_code == 409, (action, state, response.content)
                code = response.json()["code"]
                assert code == ("invalid_transition" if action in table else "unsupported_action")
                if action in table:
                    assert f"'{state}'" in response.json()["detail"]
                assert stored == state
                assert not records.exists()


def test_improvement_intakes_support_no_control(executor, tenant_a):
    intake = ImprovementIntakeFactory(tenant=tenant_a)
    for action in choices.CONTROL_ACTIONS:
        response = control(executor, intake.pk, action)
        assert response.status_code == 409
        assert response.json()["code"] == "unsupported_action"
        assert "improvement intake" in response.json()["detail"]


@pytest.mark.parametrize("action", ["stop", "", "PAUSE", "pause; drop table"])
def test_unknown_action_is_400(executor, tenant_a, action):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    response = control(executor, run.pk, action)
    assert response.status_code == 400
    assert "action" in response.json()["errors"]
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "running"


def test_missing_action_and_long_reason_are_400(executor, tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    url = f"/v1/operations/processes/{run.pk}/control"
    assert executor.post(url, {}, format="json").status_code == 400
    assert executor.post(url, ["pause"], format="json").status_code == 400
    long_reason = executor.post(url, {"action": "pause", "reason": "x" * 2001}, format="json")
    assert long_reason.status_code == 400
    assert "reason" in long_reason.json()["errors"]


def test_reason_is_optional(executor, tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    response = executor.post(f"/v1/operations/processes/{run.pk}/control", {"action": "pause"},
                             format="json")
    assert response.status_code == 200
    assert response.json()["control_history"][0]["reason"] == ""


def test_another_tenants_process_is_404_and_untouched(api_client_for, tenant_a, tenant_b):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    other = api_client_for(tenant_b, scopes=["workflows:execute", "workflows:read"])
    assert control(other, run.pk, "pause").status_code == 404
    assert other.get(f"/v1/operations/processes/{run.pk}").status_code == 404
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "running"
    assert not StatusChange.all_tenants.exists()


@pytest.mark.parametrize("process_id", ["wfrun-missing", "nothing-1", "x", "trace-" + "0" * 32])
def test_unknown_process_ids_are_404(executor, process_id):
    assert control(executor, process_id, "cancel").status_code == 404
    assert executor.get(f"/v1/operations/processes/{process_id}").status_code == 404


def test_operator_controls_any_tenant(api_client_for, tenant_b):
    run = WorkflowRunFactory(tenant=tenant_b, status="running")
    operator = api_client_for(None, scopes=["workflows:execute"], name="platform")
    response = control(operator, run.pk, "pause")
    assert response.status_code == 200
    assert response.json()["metadata"]["tenant_id"] == "tenant-b"
    assert StatusChange.all_tenants.get().tenant_id == "tenant-b"


def test_trace_detail_has_actions_per_step_and_history(executor, tenant_a):
    trace = TraceFactory(tenant=tenant_a)
    TraceStepFactory(trace=trace, step_id="one", actions=[{"a": 1}])
    TraceStepFactory(trace=trace, step_id="two", actions=[{"a": 1}, {"b": 2}, {"c": 3}])
    detail = executor.get(f"/v1/operations/processes/{trace.pk}").json()
    assert detail["type"] == "trace"
    assert [(a["step_id"], a["action_count"]) for a in detail["actions"]] == [("one", 1),
                                                                            ("two", 3)]
    assert all(a["completed_at"] for a in detail["actions"])
    assert detail["allowed_actions"] == ["cancel"]
    assert detail["control_history"] == []

    cancelled = control(executor, trace.pk, "cancel", reason="runaway").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["failure_code"] == "F-CAN"
    assert cancelled["failure_message"] == "runaway"
    assert cancelled["allowed_actions"] == []
    history = cancelled["control_history"]
    assert [(h["action"], h["state_before"], h["state_after"], h["reason"]) for h in history] == [
        ("cancel", "running", "cancelled", "runaway")
    ]
    assert history[0]["actor"].startswith("token:a33_")
    assert cancelled["history"][0]["actor_name"] == "ops-console"


def test_budget_and_intake_details(executor, tenant_a):
    budget = AutonomyBudgetFactory(tenant=tenant_a, limits={"max": 3}, status="active")
    detail = executor.get(f"/v1/operations/processes/{budget.pk}").json()
    assert detail["limits"] == {"max": 3} and detail["type"] == "autonomy_budget"
    intake = ImprovementIntakeFactory(tenant=tenant_a, summary="why")
    detail = executor.get(f"/v1/operations/processes/{intake.pk}").json()
    assert detail["summary"] == "why" and detail["allowed_actions"] == []


def test_history_accumulates_in_order(executor, tenant_a):
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="active")
    for action in ("pause", "resume", "pause", "cancel"):
        assert control(executor, budget.pk, action).status_code == 200
    detail = executor.get(f"/v1/operations/processes/{budget.pk}").json()
    assert [(h["action"], h["state_after"]) for h in detail["control_history"]] == [
        ("pause", "suspended"), ("resume", "active"), ("pause", "suspended"),
        ("cancel", "expired"),
    ]


def test_process_detail_query_count(executor, tenant_a, django_assert_max_num_queries):
    trace = TraceFactory(tenant=tenant_a)
    for _ in range(10):
        TraceStepFactory(trace=trace)
    with django_assert_max_num_queries(6):
        executor.get(f"/v1/operations/processes/{trace.pk}")


def test_controls_record_no_outcome_events_and_leave_trends_alone(
    executor, api_client_for, tenant_a, django_capture_on_commit_callbacks
):
    """An operator cancelling failing work must not hide the decline they react to."""
    from outcomes.models import OutcomeEvent

    outcomes = api_client_for(tenant_a, scopes=["outcomes:read", "outcomes:write"])
    values = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    with django_capture_on_commit_callbacks(execute=True):
        for n, value in enumerate(values):
            response = outcomes.post("/v1/outcomes/events", {
                "domain": "agent.tasks", "event_type": "task", "metric_type": "success_rate",
                "value": value, "occurred_at": f"2026-11-01T10:00:0{n}Z",
            }, format="json")
            assert response.status_code == 201
    assert outcomes.get("/v1/outcomes/trends/success_rate").json()["direction"] == "declining"

    runs = [WorkflowRunFactory(tenant=tenant_a, status="running") for _ in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        for run in runs:
            assert control(executor, run.pk, "cancel").status_code == 200

    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == len(values)
    assert outcomes.get("/v1/outcomes/trends/success_rate").json()["direction"] == "declining"
    assert StatusChange.all_tenants.filter(tenant=tenant_a, action="cancel").count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_control_and_its_audit_row_commit_together(tenant_a, monkeypatch):
    """The history row is written after the state change, in its transaction: when the
    database refuses it (here: no actor, NOT NULL), the state change rolls back too."""
    from django.db import IntegrityError

    from agent33.tenancy.context import tenant_scope
    from operations import controls
    from tests.origins import operator

    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    with pytest.raises(IntegrityError), tenant_scope(tenant_a):
        controls.process_control(process_id=run.pk, action="pause", origin=operator(None))
    run.refresh_from_db()
    assert run.status == "running"
    assert not StatusChange.all_tenants.filter(process_id=run.pk).exists()


def test_detail_shows_the_latest_fifty_changes_newest_first(executor, tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    from operations.selectors import HISTORY_LIMIT
    from tests.factories.operations import StatusChangeFactory

    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    start = timezone.now() - timedelta(hours=1)
    for n in range(HISTORY_LIMIT + 10):
        StatusChangeFactory(tenant=tenant_a, process_type="workflow", process_id=run.pk,
                             reason=f"control {n}", created_at=start + timedelta(seconds=n))
    detail = executor.get(f"/v1/operations/processes/{run.pk}").json()
    assert [h["reason"] for h in detail["history"]] == [
        f"control {n}" for n in range(59, 9, -1)]
    # The deprecated alias keeps its order (oldest first) for one release.
    assert [h["reason"] for h in detail["control_history"]] == [
        f"control {n}" for n in range(10, 60)]
