"""Staff side: the hub page, its JSON and control endpoints, model admins and admin actions."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from guardian.shortcuts import assign_perm

from agent33.tenancy.staff import ACCESS_TENANT_PERM
from operations.models import AutonomyBudget, StatusChange, WorkflowRun
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    StatusChangeFactory,
    TraceFactory,
    TraceStepFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

HUB = "/admin/operations/hub/"


@pytest.fixture
def make_staff(django_user_model):
    def build(username, tenants=(), superuser=False, perms=True):
        # No password: hashing one costs ~0.3 s per user, and force_login needs none.
        user = django_user_model.objects.create_user(
            username=username, password=None, is_staff=True, is_superuser=superuser
        )
        if perms and not superuser:
            user.user_permissions.set(
                Permission.objects.filter(content_type__app_label="operations")
            )
        for tenant in tenants:
            assign_perm(ACCESS_TENANT_PERM, user, tenant)
        return user

    return build


@pytest.fixture
def superuser_client(client, make_staff):
    client.force_login(make_staff("root", superuser=True))
    return client


@pytest.fixture
def limited_client(client, make_staff, tenant_a):
    client.force_login(make_staff("alice", tenants=[tenant_a]))
    return client


def post_control(client, **body):
    return client.post(HUB, json.dumps(body), content_type="application/json")


def test_hub_page_renders_with_filters_script_and_multimodal_placeholder(superuser_client):
    response = superuser_client.get(HUB)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="multimodal-panel"' in html
    assert "operations/hub.js" in html
    assert 'id="hub-type"' in html and 'id="hub-status"' in html
    for include in ("traces", "budgets", "improvements", "workflows"):
        assert f'value="{include}"' in html
    assert "csrfmiddlewaretoken" in html
    assert "<script src=\"http" not in html  # no CDN


def test_admin_index_links_the_hub(superuser_client):
    html = superuser_client.get("/admin/").content.decode()
    assert reverse("admin:operations_hub") in html


def test_hub_json_uses_the_staff_tenant_scope(limited_client, tenant_a, tenant_b):
    mine = WorkflowRunFactory(tenant=tenant_a, status="running")
    WorkflowRunFactory(tenant=tenant_b, status="running")
    response = limited_client.get(HUB, {"format": "json"})
    assert response.status_code == 200
    body = response.json()
    assert [p["id"] for p in body["processes"]] == [mine.pk]
    assert body["processes"][0]["allowed_actions"] == ["pause", "cancel"]


def test_superuser_hub_json_sees_all_tenants_and_filters(superuser_client, tenant_a, tenant_b):
    WorkflowRunFactory(tenant=tenant_a, status="running")
    TraceFactory(tenant=tenant_b)
    body = superuser_client.get(HUB, {"format": "json"}).json()
    assert {p["metadata"]["tenant_id"] for p in body["processes"]} == {"tenant-a", "tenant-b"}
    body = superuser_client.get(HUB, {"format": "json", "include": "traces"}).json()
    assert {p["type"] for p in body["processes"]} == {"trace"}
    bad = superuser_client.get(HUB, {"format": "json", "include": "nope"})
    assert bad.status_code == 400
    assert bad.json() == {"detail": "Invalid include values: nope", "code": "invalid"}


def test_hub_json_query_count_is_fixed(limited_client, tenant_a, django_assert_max_num_queries):
    WorkflowRunFactory(tenant=tenant_a, status="running")
    with django_assert_max_num_queries(12) as small:
        limited_client.get(HUB, {"format": "json"})
    WorkflowRunFactory.create_batch(30, tenant=tenant_a, status="running")
    TraceFactory.create_batch(30, tenant=tenant_a)
    with django_assert_max_num_queries(len(small.captured_queries)):
        limited_client.get(HUB, {"format": "json"})


def test_control_from_the_page_calls_the_service(limited_client, tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    response = post_control(limited_client, process_id=run.pk, action="pause", reason="look")
    assert response.status_code == 200, response.content
    process = response.json()["process"]
    assert process["status"] == "paused"
    assert process["allowed_actions"] == ["resume"]
    record = StatusChange.all_tenants.get(process_id=run.pk)
    assert (record.actor, record.reason, record.state_before, record.state_after) == (
        "user:alice", "look", "running", "paused"
    )
    again = post_control(limited_client, process_id=run.pk, action="pause", reason="again")
    assert again.status_code == 409
    assert "'paused'" in again.json()["detail"]


def test_control_from_the_page_errors(limited_client, tenant_b):
    foreign = WorkflowRunFactory(tenant=tenant_b, status="running")
    assert post_control(limited_client, process_id=foreign.pk, action="pause").status_code == 404
    assert WorkflowRun.all_tenants.get(pk=foreign.pk).status == "running"
    assert post_control(limited_client, process_id=foreign.pk, action="zap").status_code == 400
    assert post_control(limited_client, process_id=["x"], action="pause").status_code == 400
    bad_json = limited_client.post(HUB, "{nope", content_type="application/json")
    assert bad_json.status_code == 400
    not_object = limited_client.post(HUB, "[1]", content_type="application/json")
    assert not_object.status_code == 400


def test_control_needs_the_control_permission(client, make_staff, tenant_a):
    user = make_staff("viewer", tenants=[tenant_a], perms=False)
    user.user_permissions.add(Permission.objects.get(codename="view_workflowrun"))
    client.force_login(user)
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    assert client.get(HUB).status_code == 200
    assert post_control(client, process_id=run.pk, action="pause").status_code == 403
    assert 'data-can-control="0"' in client.get(HUB).content.decode()


def test_hub_page_needs_the_view_permission(client, make_staff, tenant_a):
    client.force_login(make_staff("nobody", tenants=[tenant_a], perms=False))
    assert client.get(HUB).status_code == 403
    assert client.get(HUB, {"format": "json"}).status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get(HUB)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    "model", ["trace", "autonomybudget", "improvementintake", "workflowrun", "statuschange"]
)
def test_model_admins_are_tenant_limited(limited_client, tenant_a, tenant_b, model):
    factories = {
        "trace": TraceFactory, "autonomybudget": AutonomyBudgetFactory,
        "improvementintake": ImprovementIntakeFactory, "workflowrun": WorkflowRunFactory,
        "statuschange": StatusChangeFactory,
    }
    mine = factories[model](tenant=tenant_a)
    theirs = factories[model](tenant=tenant_b)
    changelist = limited_client.get(reverse(f"admin:operations_{model}_changelist"))
    assert changelist.status_code == 200
    html = changelist.content.decode()
    label = (lambda o: o.process_id) if model == "statuschange" else (lambda o: o.pk)
    assert label(mine) in html and label(theirs) not in html
    assert "tenant-b" not in html  # not even in the tenant filter
    own = limited_client.get(reverse(f"admin:operations_{model}_change", args=[mine.pk]))
    assert own.status_code == 200
    foreign = limited_client.get(reverse(f"admin:operations_{model}_change", args=[theirs.pk]))
    assert foreign.status_code == 302  # the admin redirects "does not exist" to the index


def test_change_page_shows_steps_and_control_history(superuser_client, tenant_a):
    trace = TraceFactory(tenant=tenant_a)
    TraceStepFactory(trace=trace, step_id="plan-step")
    StatusChangeFactory(tenant=tenant_a, process_type="trace", process_id=trace.pk,
                         action="cancel", reason="runaway-reason", state_before="running",
                         state_after="cancelled")
    html = superuser_client.get(
        reverse("admin:operations_trace_change", args=[trace.pk])
    ).content.decode()
    assert "plan-step" in html and "runaway-reason" in html
    history = superuser_client.get(
        reverse("admin:operations_statuschange_changelist"), {"process_id": trace.pk}
    )
    assert history.status_code == 200 and "runaway-reason" in history.content.decode()


def test_admin_actions_call_the_control_service(limited_client, tenant_a):
    active = AutonomyBudgetFactory(tenant=tenant_a, status="active")
    draft = AutonomyBudgetFactory(tenant=tenant_a, status="draft")
    response = limited_client.post(
        reverse("admin:operations_autonomybudget_changelist"),
        {"action": "control_pause", "_selected_action": [active.pk, draft.pk],
         "reason": "freeze spending", "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("pause: 1 process" in m for m in messages)
    assert any("'draft'" in m for m in messages)
    assert AutonomyBudget.all_tenants.get(pk=active.pk).status == "suspended"
    assert AutonomyBudget.all_tenants.get(pk=draft.pk).status == "draft"
    record = StatusChange.all_tenants.get(process_id=active.pk)
    assert record.reason == "freeze spending" and record.actor == "user:alice"


def test_admin_actions_hidden_without_control_permission(client, make_staff, tenant_a):
    user = make_staff("viewer", tenants=[tenant_a], perms=False)
    user.user_permissions.add(Permission.objects.get(codename="view_workflowrun"))
    client.force_login(user)
    WorkflowRunFactory(tenant=tenant_a)
    html = client.get(reverse("admin:operations_workflowrun_changelist")).content.decode()
    assert "control_pause" not in html
