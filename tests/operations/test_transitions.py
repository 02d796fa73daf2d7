"""Every allowed and every forbidden move of each state machine, through the API."""

from __future__ import annotations

import pytest

from operations import choices
from operations.models import AutonomyBudget, ImprovementIntake, StatusChange, Trace, WorkflowRun
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

MACHINES = [
    pytest.param(
        "budgets", AutonomyBudgetFactory, AutonomyBudget, choices.BudgetStatus,
        choices.BUDGET_TRANSITIONS, id="budgets",
    ),
    pytest.param(
        "improvements", ImprovementIntakeFactory, ImprovementIntake, choices.IntakeStatus,
        choices.INTAKE_TRANSITIONS, id="improvements",
    ),
    pytest.param(
        "workflow-runs", WorkflowRunFactory, WorkflowRun, choices.WorkflowRunStatus,
        choices.WORKFLOW_TRANSITIONS, id="workflow-runs",
    ),
]

EXPECTED = {
    "budgets": {
        ("draft", "pending_approval"), ("draft", "active"), ("pending_approval", "active"),
        ("pending_approval", "rejected"), ("active", "suspended"), ("active", "expired"),
        ("active", "completed"), ("suspended", "active"), ("suspended", "expired"),
    },
    "improvements": {
        ("submitted", "triaged"), ("triaged", "analyzing"), ("analyzing", "accepted"),
        ("analyzing", "deferred"), ("analyzing", "rejected"), ("accepted", "tracked"),
        ("deferred", "triaged"),
    },
    "workflow-runs": {
        ("queued", "running"), ("running", "completed"), ("running", "failed"),
        ("running", "cancelled"), ("running", "paused"), ("paused", "running"),
        ("queued", "cancelled"),
    },
}


# Moves that equal a control (DESIGN §8.1): they need workflows:execute on /transition as on
# /control. Approvals need budgets:approve.
CONTROL_MOVES = {
    "budgets": {("active", "suspended"), ("active", "expired"), ("suspended", "active"),
                ("suspended", "expired")},
    "improvements": set(),
    "workflow-runs": {("running", "paused"), ("running", "cancelled"), ("queued", "cancelled"),
                      ("paused", "running")},
}
APPROVALS = {"budgets": {("draft", "active"), ("pending_approval", "active")},
             "improvements": set(), "workflow-runs": set()}


@pytest.fixture
def writer(api_client_for, tenant_a):
    """A token that may make every move: write, execute and approve."""
    return api_client_for(tenant_a, scopes=["workflows:write", "workflows:execute",
                                            "budgets:approve"], name="full")


@pytest.fixture
def write_only(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:write"], name="write-only")


@pytest.mark.parametrize(("path", "factory", "model", "status_enum", "table"), MACHINES)
def test_transition_table_matches_the_design(path, factory, model, status_enum, table):
    allowed = {(src, dst) for src, targets in table.items() for dst in targets}
    assert allowed == EXPECTED[path]
    assert set(table) == set(status_enum.values)


@pytest.mark.parametrize(("path", "factory", "model", "status_enum", "table"), MACHINES)
def test_every_move_through_the_api(writer, tenant_a, path, factory, model, status_enum, table):
    for current in status_enum.values:
        for requested in status_enum.values:
            obj = factory(tenant=tenant_a, status=current)
            response = writer.post(
                f"/v1/operations/{path}/{obj.pk}/transition", {"status": requested},
                format="json",
            )
            stored = model.all_tenants.get(pk=obj.pk).status
            if requested in table[current]:
                assert response.status_code == 200, (current, requested, response.content)
                assert response.json()["status"] == requested
                assert stored == requested
            else:
                assert response.status_code == 409, (current, requested, response.content)
                body = response.json()
                assert body["code"] == "invalid_transition"
                assert f"'{current}'" in body["detail"] and f"'{requested}'" in body["detail"]
                assert stored == current


@pytest.mark.parametrize(("path", "factory", "model", "status_enum", "table"), MACHINES)
def test_unknown_or_missing_status_is_400(writer, tenant_a, path, factory, model, status_enum,
                                         table):
    obj = factory(tenant=tenant_a)
    for body in ({}, {"status": "nonsense"}, {"status": None}, {"status": ""}):
        response = writer.post(f"/v1/operations/{path}/{obj.pk}/transition", body, format="json")
        assert response.status_code == 400
        assert response.json()["detail"].startswith("status:")


@pytest.mark.parametrize(("path", "factory", "model", "status_enum", "table"), MACHINES)
def test_writing_alone_cannot_make_a_control_move_or_approve(
    write_only, tenant_a, path, factory, model, status_enum, table
):
    """Permissions follow the move, never the path: with only workflows:write, /transition
    refuses what /control would refuse (403 naming workflows:execute) and approvals (403
    naming budgets:approve), and changes nothing; every other allowed move succeeds."""
    for current, targets in table.items():
        for requested in targets:
            obj = factory(tenant=tenant_a, status=current)
            response = write_only.post(f"/v1/operations/{path}/{obj.pk}/transition",
                                       {"status": requested}, format="json")
            stored = model.all_tenants.get(pk=obj.pk).status
            if (current, requested) in CONTROL_MOVES[path]:
                assert response.status_code == 403, (current, requested, response.content)
                assert response.json()["code"] == "missing_scope"
                assert "workflows:execute" in response.json()["detail"]
                assert stored == current
            elif (current, requested) in APPROVALS[path]:
                assert response.status_code == 403, (current, requested, response.content)
                assert "budgets:approve" in response.json()["detail"]
                assert stored == current
            else:
                assert response.status_code == 200, (current, requested, response.content)
                assert stored == requested


def test_every_trace_completion(writer, tenant_a):
    statuses = choices.TraceStatus.values
    for current in statuses:
        for requested in sorted(choices.TRACE_TERMINAL):
            trace = TraceFactory(tenant=tenant_a, status=current)
            response = writer.post(
                f"/v1/operations/traces/{trace.pk}/complete", {"status": requested},
                format="json",
            )
            stored = Trace.all_tenants.get(pk=trace.pk)
            if current == "running":
                assert response.status_code == 200
                assert stored.status == requested and stored.completed_at is not None
                [change] = StatusChange.all_tenants.filter(process_id=trace.pk)
                # The runtime reporting its own end is the process's cause; a cancel is an
                # operator's, whichever endpoint it came through.
                cause = "operator" if requested == "cancelled" else "process"
                assert (change.cause, change.path, change.state_after) == (
                    cause, "api", requested)
            else:
                assert response.status_code == 409
                assert f"'{current}'" in response.json()["detail"]
                assert f"'{requested}'" in response.json()["detail"]
                assert stored.status == current


def test_a_trace_cancelled_through_complete_needs_execute(write_only, tenant_a):
    trace = TraceFactory(tenant=tenant_a)
    response = write_only.post(f"/v1/operations/traces/{trace.pk}/complete",
                               {"status": "cancelled"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "missing_scope"
    assert Trace.all_tenants.get(pk=trace.pk).status == "running"
    assert write_only.post(f"/v1/operations/traces/{trace.pk}/complete",
                           {"status": "failed"}, format="json").status_code == 200


def test_transitions_of_another_tenant_are_404(api_client_for, tenant_a, tenant_b):
    run = WorkflowRunFactory(tenant=tenant_a)
    other = api_client_for(tenant_b, scopes=["workflows:write"])
    response = other.post(
        f"/v1/operations/workflow-runs/{run.pk}/transition", {"status": "running"}, format="json"
    )
    assert response.status_code == 404
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "queued"


def test_a_control_the_table_forbids_cannot_be_declared():
    with pytest.raises(ValueError, match="transition table forbids"):
        choices.StateMachine(
            label="budget",
            states=tuple(choices.BudgetStatus.values),
            transitions=choices.BUDGET_TRANSITIONS,
            terminal=choices.BUDGET_TERMINAL,
            controls={"resume": choices.ControlRule("active", frozenset({"expired"}))},
        )


def test_status_columns_have_check_constraints():
    for model in (Trace, AutonomyBudget, ImprovementIntake, WorkflowRun):
        names = {c.name for c in model._meta.constraints}
        assert any(name.endswith("_status_valid") for name in names), model
