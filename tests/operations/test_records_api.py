"""Process records through the API: create, list (filters, ordering, queries), retrieve,
trace steps and completion, and input validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from operations.models import AutonomyBudget, Trace, TraceStep, WorkflowRun
from tests.conftest import warm_up
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    TraceStepFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

BASE = "/v1/operations"


@pytest.fixture
def writer(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:write", "workflows:read"])


def test_trace_lifecycle_create_steps_complete_retrieve(writer, tenant_a):
    response = writer.post(
        f"{BASE}/traces",
        {"task_id": "t-1", "agent_id": "a-1", "session_id": "s-1", "run_id": "r-1"},
        format="json",
    )
    assert response.status_code == 201, response.content
    trace = response.json()
    assert trace["id"].startswith("trace-")
    assert trace["tenant_id"] == tenant_a.slug
    assert trace["status"] == "running"
    assert trace["steps"] == [] and trace["step_count"] == 0
    assert trace["failure_code"] == "" and trace["completed_at"] is None

    step = writer.post(
        f"{BASE}/traces/{trace['id']}/steps",
        {"step_id": "plan", "actions": [{"tool": "search"}, {"tool": "read"}]},
        format="json",
    )
    assert step.status_code == 201, step.content
    assert step.json()["action_count"] == 2
    assert step.json()["trace_id"] == trace["id"]

    duplicate = writer.post(f"{BASE}/traces/{trace['id']}/steps", {"step_id": "plan"},
                            format="json")
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "duplicate_step"

    done = writer.post(
        f"{BASE}/traces/{trace['id']}/complete",
        {"status": "failed", "failure_code": "F-TOOL", "failure_message": "tool crashed"},
        format="json",
    )
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["status"] == "failed"
    assert body["failure_code"] == "F-TOOL"
    assert body["completed_at"] is not None
    assert body["duration_ms"] >= 0
    assert [s["step_id"] for s in body["steps"]] == ["plan"]

    late = writer.post(f"{BASE}/traces/{trace['id']}/steps", {"step_id": "late"}, format="json")
    assert late.status_code == 409
    assert late.json()["code"] == "trace_finished"

    again = writer.post(f"{BASE}/traces/{trace['id']}/complete", {"status": "completed"},
                        format="json")
    assert again.status_code == 409
    assert "'failed'" in again.json()["detail"] and "'completed'" in again.json()["detail"]

    detail = writer.get(f"{BASE}/traces/{trace['id']}").json()
    assert detail["step_count"] == 1
    assert detail["steps"][0]["actions"] == [{"tool": "search"}, {"tool": "read"}]


def test_trace_complete_requires_a_terminal_status(writer, tenant_a):
    trace = TraceFactory(tenant=tenant_a)
    for body in ({}, {"status": "running"}, {"status": "bogus"}):
        response = writer.post(f"{BASE}/traces/{trace.pk}/complete", body, format="json")
        assert response.status_code == 400
        assert response.json()["detail"].startswith("status:")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("traces", {"task_id": "x" * 201}, "task_id"),
        ("traces", {"task_id": "nul\x00"}, "task_id"),
        ("budgets", {"limits": [1, 2]}, "limits"),
        ("budgets", {"limits": {"k": "nul\x00"}}, "limits"),
        ("budgets", {"expires_at": "next tuesday"}, "expires_at"),
        ("improvements", {}, "title"),
        ("improvements", {"title": ""}, "title"),
        ("improvements", {"title": "t", "urgency": "urgent"}, "urgency"),
        ("improvements", {"title": "t", "research_type": "magic"}, "research_type"),
        ("workflow-runs", {}, "workflow_name"),
        ("workflow-runs", {"workflow_name": "w", "status": "paused"}, "status"),
        ("workflow-runs", {"workflow_name": "w", "duration_ms": -1}, "duration_ms"),
        ("workflow-runs", {"workflow_name": "w", "duration_ms": 2**70}, "duration_ms"),
        ("workflow-runs", {"workflow_name": "w", "started_at": "2024-13-45T00:00"}, "started_at"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(writer, path, body, field):
    response = writer.post(f"{BASE}/{path}", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]


def test_deeply_nested_json_is_stored_not_crashing(writer):
    nested = "[" * 400 + "]" * 400
    response = writer.post(
        f"{BASE}/budgets", f'{{"limits": {{"deep": {nested}}}}}', content_type="application/json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize("body", [[1, 2], "text", 7, None])
def test_non_object_bodies_are_400(writer, body):
    response = writer.post(f"{BASE}/workflow-runs", body, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"step_id": ""}, "step_id"),
        ({"step_id": "s", "actions": "not-a-list"}, "actions"),
        ({"step_id": "s", "actions": [{"k": "\x00"}]}, "actions"),
        ({"step_id": "s", "actions": [{}] * 1001}, "actions"),
        ({"step_id": "s", "completed_at": "yesterday"}, "completed_at"),
    ],
)
def test_trace_step_validation(writer, tenant_a, body, field):
    trace = TraceFactory(tenant=tenant_a)
    response = writer.post(f"{BASE}/traces/{trace.pk}/steps", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_create_defaults(writer, tenant_a):
    budget = writer.post(f"{BASE}/budgets", {}, format="json").json()
    assert budget["status"] == "draft" and budget["limits"] == {} and budget["expires_at"] is None
    intake = writer.post(f"{BASE}/improvements", {"title": "Faster"}, format="json").json()
    assert (intake["status"], intake["research_type"], intake["urgency"]) == (
        "submitted", "internal", "medium"
    )
    run = writer.post(f"{BASE}/workflow-runs", {"workflow_name": "nightly"}, format="json").json()
    assert run["status"] == "queued" and run["duration_ms"] is None
    assert run["error"] == "" and run["job_id"] == "" and run["trigger_type"] == ""
    started = timezone.now() - timedelta(minutes=3)
    run = writer.post(
        f"{BASE}/workflow-runs",
        {"workflow_name": "n", "status": "running", "started_at": started.isoformat()},
        format="json",
    ).json()
    assert run["status"] == "running"
    assert WorkflowRun.all_tenants.get(pk=run["id"]).started_at == started


def test_status_and_ids_in_create_bodies_are_ignored(writer, tenant_a):
    response = writer.post(
        f"{BASE}/budgets",
        {"id": "budget-mine", "status": "active", "tenant_id": "tenant-b", "task_id": "x"},
        format="json",
    )
    body = response.json()
    assert body["id"] != "budget-mine" and body["status"] == "draft"
    assert AutonomyBudget.all_tenants.get(pk=body["id"]).tenant_id == tenant_a.slug


def test_operator_tokens_cannot_create(api_client_for):
    operator = api_client_for(None, scopes=["workflows:write"])
    response = operator.post(f"{BASE}/traces", {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"


def test_lists_are_newest_first_with_link_pagination(writer, tenant_a):
    now = timezone.now()
    runs = [
        WorkflowRunFactory(tenant=tenant_a, started_at=now - timedelta(minutes=i))
        for i in range(5)
    ]
    response = writer.get(f"{BASE}/workflow-runs?limit=2")
    assert [r["id"] for r in response.json()] == [runs[0].pk, runs[1].pk]
    assert 'rel="next"' in response.headers["Link"]
    next_url = response.headers["Link"].split(";")[0].strip("<>")
    page2 = writer.get(next_url)
    assert [r["id"] for r in page2.json()] == [runs[2].pk, runs[3].pk]
    assert writer.get(f"{BASE}/workflow-runs?limit=0").status_code == 400
    assert writer.get(f"{BASE}/workflow-runs?limit=101").status_code == 400
    assert writer.get(f"{BASE}/workflow-runs?cursor=garbage").status_code == 400


def test_list_filters(writer, tenant_a):
    TraceFactory(tenant=tenant_a, task_id="alpha", agent_id="a1")
    TraceFactory(tenant=tenant_a, task_id="beta", agent_id="a2", status="completed")
    assert [t["task_id"] for t in writer.get(f"{BASE}/traces?task_id=alpha").json()] == ["alpha"]
    assert [t["task_id"] for t in writer.get(f"{BASE}/traces?agent_id=a2").json()] == ["beta"]
    assert [t["task_id"] for t in writer.get(f"{BASE}/traces?status=completed").json()] == [
        "beta"
    ]
    bad = writer.get(f"{BASE}/traces?status=nonsense")
    assert bad.status_code == 400 and "status" in bad.json()["errors"]

    AutonomyBudgetFactory(tenant=tenant_a, task_id="b1", status="active")
    AutonomyBudgetFactory(tenant=tenant_a, task_id="b2")
    assert [b["task_id"] for b in writer.get(f"{BASE}/budgets?status=active").json()] == ["b1"]
    assert [b["task_id"] for b in writer.get(f"{BASE}/budgets?task_id=b2").json()] == ["b2"]

    ImprovementIntakeFactory(tenant=tenant_a, title="i1", urgency="high", source="outcomes")
    ImprovementIntakeFactory(tenant=tenant_a, title="i2", research_type="user")
    assert [i["title"] for i in writer.get(f"{BASE}/improvements?urgency=high").json()] == ["i1"]
    assert [i["title"] for i in writer.get(f"{BASE}/improvements?research_type=user").json()] == [
        "i2"
    ]
    assert [i["title"] for i in writer.get(f"{BASE}/improvements?source=outcomes").json()] == [
        "i1"
    ]

    WorkflowRunFactory(tenant=tenant_a, workflow_name="nightly", job_id="j1")
    WorkflowRunFactory(tenant=tenant_a, workflow_name="weekly", status="running")
    names = writer.get(f"{BASE}/workflow-runs?workflow_name=nightly").json()
    assert [r["workflow_name"] for r in names] == ["nightly"]
    assert [r["job_id"] for r in writer.get(f"{BASE}/workflow-runs?job_id=j1").json()] == ["j1"]
    running = writer.get(f"{BASE}/workflow-runs?status=running").json()
    assert [r["workflow_name"] for r in running] == ["weekly"]
    since = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert writer.get(f"{BASE}/workflow-runs", {"started_after": since}).json() == []
    assert writer.get(f"{BASE}/workflow-runs?started_after=soon").status_code == 400


@pytest.mark.parametrize(
    ("path", "factory"),
    [
        ("traces", TraceStepFactory),
        ("budgets", AutonomyBudgetFactory),
        ("improvements", ImprovementIntakeFactory),
        ("workflow-runs", WorkflowRunFactory),
    ],
)
def test_lists_use_a_fixed_number_of_queries(
    writer, tenant_a, path, factory, django_assert_max_num_queries
):
    def make(n):
        for _ in range(n):
            if factory is TraceStepFactory:
                factory(trace=TraceFactory(tenant=tenant_a))
            else:
                factory(tenant=tenant_a)

    make(2)
    warm_up(writer)
    with django_assert_max_num_queries(3) as few:
        assert len(writer.get(f"{BASE}/{path}").json()) == 2
    make(30)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(writer.get(f"{BASE}/{path}").json()) == 32


def test_trace_list_counts_steps(writer, tenant_a):
    trace = TraceFactory(tenant=tenant_a)
    TraceStepFactory(trace=trace)
    TraceStepFactory(trace=trace)
    TraceFactory(tenant=tenant_a)
    counts = sorted(t["step_count"] for t in writer.get(f"{BASE}/traces").json())
    assert counts == [0, 2]


def test_workflow_run_transition_extras_and_duration(writer, tenant_a):
    run = WorkflowRunFactory(
        tenant=tenant_a, status="running", started_at=timezone.now() - timedelta(seconds=2)
    )
    response = writer.post(
        f"{BASE}/workflow-runs/{run.pk}/transition",
        {"status": "failed", "error": "boom"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["error"] == "boom"
    assert response.json()["duration_ms"] >= 2000
    other = WorkflowRunFactory(tenant=tenant_a, status="running")
    response = writer.post(
        f"{BASE}/workflow-runs/{other.pk}/transition",
        {"status": "completed", "duration_ms": 1234},
        format="json",
    )
    assert response.json()["duration_ms"] == 1234


def test_trace_steps_and_models_keep_the_trace_tenant(writer, tenant_a):
    trace = writer.post(f"{BASE}/traces", {}, format="json").json()
    writer.post(f"{BASE}/traces/{trace['id']}/steps", {"step_id": "s"}, format="json")
    step = TraceStep.all_tenants.get(trace_id=trace["id"])
    assert step.tenant_id == Trace.all_tenants.get(pk=trace["id"]).tenant_id == tenant_a.slug
