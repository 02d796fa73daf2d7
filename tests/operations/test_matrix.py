"""Every operations route and action through the shared tenancy/auth matrix."""

from __future__ import annotations

import pytest

from operations.models import (
    AutonomyBudget,
    ControlAction,
    ImprovementIntake,
    Trace,
    TraceStep,
    WorkflowRun,
)
from tests.api_matrix import Endpoint, Resource, run_api_matrix
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

READ, WRITE, EXECUTE = "workflows:read", "workflows:write", "workflows:execute"
BASE = "/v1/operations"


def _owner(model):
    return lambda pk: model.all_tenants.get(pk=pk).tenant_id


def _record_resource(path, model, factory, create_body, transition_body=None, extra=()):
    endpoints = [
        Endpoint("GET", f"{BASE}/{path}", READ),
        Endpoint("POST", f"{BASE}/{path}", WRITE, body=create_body),
        Endpoint("GET", f"{BASE}/{path}/{{id}}", READ),
        *extra,
    ]
    if transition_body is not None:
        endpoints.append(Endpoint("POST", f"{BASE}/{path}/{{id}}/transition", WRITE,
                                  body=transition_body))
    return Resource(
        endpoints=endpoints,
        make_object=lambda tenant: factory(tenant=tenant).pk,
        snapshot=lambda pk: (model.all_tenants.get(pk=pk).status,
                             TraceStep.all_tenants.filter(trace_id=pk).count()),
        list_path=f"{BASE}/{path}",
        list_scope=READ,
        create_path=f"{BASE}/{path}",
        create_scope=WRITE,
        create_body=create_body,
        owner_of=_owner(model),
    )


RESOURCES = {
    "traces": _record_resource(
        "traces", Trace, TraceFactory, {"task_id": "t"},
        extra=[
            Endpoint("POST", f"{BASE}/traces/{{id}}/steps", WRITE,
                     body={"step_id": "s", "actions": [{"tool": "x"}]}),
            Endpoint("POST", f"{BASE}/traces/{{id}}/complete", WRITE,
                     body={"status": "completed"}),
        ],
    ),
    "budgets": _record_resource("budgets", AutonomyBudget, AutonomyBudgetFactory,
                                {"task_id": "b"}, {"status": "active"}),
    "improvements": _record_resource("improvements", ImprovementIntake, ImprovementIntakeFactory,
                                     {"title": "idea"}, {"status": "triaged"}),
    "workflow-runs": _record_resource("workflow-runs", WorkflowRun, WorkflowRunFactory,
                                      {"workflow_name": "w"}, {"status": "running"}),
}


@pytest.mark.parametrize("name", list(RESOURCES))
def test_record_routes_pass_the_matrix(name, api_client_for, tenant_a, tenant_b):
    run_api_matrix(RESOURCES[name], api_client_for=api_client_for, tenant_a=tenant_a,
                   tenant_b=tenant_b)


PROCESS_FACTORIES = {
    "trace": (Trace, lambda t: TraceFactory(tenant=t), "cancel"),
    "autonomy_budget": (AutonomyBudget,
                        lambda t: AutonomyBudgetFactory(tenant=t, status="active"), "pause"),
    "improvement_intake": (ImprovementIntake, lambda t: ImprovementIntakeFactory(tenant=t),
                           "cancel"),
    "workflow": (WorkflowRun, lambda t: WorkflowRunFactory(tenant=t, status="running"), "pause"),
}


@pytest.mark.parametrize("type_name", list(PROCESS_FACTORIES))
def test_process_routes_pass_the_matrix(type_name, api_client_for, tenant_a, tenant_b):
    model, make, action = PROCESS_FACTORIES[type_name]
    resource = Resource(
        endpoints=[
            Endpoint("GET", f"{BASE}/processes/{{id}}", READ),
            Endpoint("POST", f"{BASE}/processes/{{id}}/control", EXECUTE,
                     body={"action": action, "reason": "matrix"}),
        ],
        make_object=lambda tenant: make(tenant).pk,
        snapshot=lambda pk: (model.all_tenants.get(pk=pk).status,
                             ControlAction.all_tenants.filter(process_id=pk).count()),
    )
    run_api_matrix(resource, api_client_for=api_client_for, tenant_a=tenant_a, tenant_b=tenant_b)


def test_hub_passes_the_matrix(api_client_for, tenant_a, tenant_b):
    resource = Resource(
        endpoints=[Endpoint("GET", f"{BASE}/hub", READ)],
        make_object=lambda tenant: WorkflowRunFactory(tenant=tenant).pk,
    )
    run_api_matrix(resource, api_client_for=api_client_for, tenant_a=tenant_a, tenant_b=tenant_b)
    # The hub is not a plain list, so the matrix's "own rows only" check is done here.
    mine = WorkflowRunFactory(tenant=tenant_a).pk
    theirs = WorkflowRunFactory(tenant=tenant_b).pk
    body = api_client_for(tenant_a, scopes=[READ]).get(f"{BASE}/hub").json()
    ids = {p["id"] for p in body["processes"]}
    assert mine in ids and theirs not in ids
    assert {p["metadata"]["tenant_id"] for p in body["processes"]} == {tenant_a.slug}
