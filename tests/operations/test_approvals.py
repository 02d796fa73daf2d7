"""Approving a budget is its own right (DESIGN §8.1): `budgets:approve` (or `admin`) on the
API, the `operations.approve_budget` permission in the admin; the approver recorded in
`approved_by` is whoever approved, never a name a client sent."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from guardian.shortcuts import assign_perm

from agent33.tenancy.staff import ACCESS_TENANT_PERM
from operations.models import AutonomyBudget, StatusChange
from tests.factories.operations import AutonomyBudgetFactory

pytestmark = pytest.mark.django_db

BUDGETS = "/v1/operations/budgets"


@pytest.fixture
def writer(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:write", "workflows:execute"],
                          name="agent-runtime")


@pytest.fixture
def approver(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:write", "budgets:approve"],
                          name="finance-lead")


def test_a_name_in_approved_by_is_refused_and_stores_nothing(writer):
    response = writer.post(BUDGETS, {"task_id": "t", "approved_by": "finance-lead"},
                           format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and "approved_by" in body["errors"]
    assert not AutonomyBudget.all_tenants.exists()
    # Empty is ignored, as clients that always send the field do.
    created = writer.post(BUDGETS, {"task_id": "t", "approved_by": ""}, format="json")
    assert created.status_code == 201 and created.json()["approved_by"] == ""


@pytest.mark.parametrize("start", ["draft", "pending_approval"])
def test_only_an_approver_activates_a_budget_and_is_recorded(writer, approver, tenant_a, start):
    budget = AutonomyBudgetFactory(tenant=tenant_a, status=start)
    refused = writer.post(f"{BUDGETS}/{budget.pk}/transition", {"status": "active"},
                          format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": f"Moving autonomy budget {budget.pk} from '{start}' to 'active' approves "
                  "it: it needs the scope budgets:approve.",
        "code": "missing_scope",
    }
    assert AutonomyBudget.all_tenants.get(pk=budget.pk).status == start
    assert not StatusChange.all_tenants.exists()

    approved = approver.post(f"{BUDGETS}/{budget.pk}/transition",
                             {"status": "active", "reason": "within Q3 allowance"},
                             format="json")
    assert approved.status_code == 200, approved.content
    stored = AutonomyBudget.all_tenants.get(pk=budget.pk)
    [change] = StatusChange.all_tenants.filter(process_id=budget.pk)
    assert stored.status == "active" and stored.approved_by == change.actor
    assert change.actor.startswith("token:a33_") and change.actor_name == "finance-lead"
    assert (change.action, change.cause, change.path, change.reason) == (
        "approve", "operator", "api", "within Q3 allowance")


def test_admin_scope_implies_approval(api_client_for, tenant_a):
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    admin = api_client_for(tenant_a, scopes=["admin"])
    response = admin.post(f"{BUDGETS}/{budget.pk}/transition", {"status": "active"},
                          format="json")
    assert response.status_code == 200


def test_staff_approve_only_with_the_approve_permission(client, django_user_model, tenant_a):
    staff = django_user_model.objects.create_user("controller", password=None, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(
        content_type__app_label="operations").exclude(codename="approve_budget"))
    assign_perm(ACCESS_TENANT_PERM, staff, tenant_a)
    client.force_login(staff)
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    page = f"/admin/operations/autonomybudget/{budget.pk}/change/"

    assert b'value="active"' not in client.get(page).content  # no Approve button offered
    client.post(f"/admin/operations/autonomybudget/{budget.pk}/move/", {"target": "active"})
    assert AutonomyBudget.all_tenants.get(pk=budget.pk).status == "pending_approval"

    staff.user_permissions.add(Permission.objects.get(codename="approve_budget"))
    staff = django_user_model.objects.get(pk=staff.pk)  # drop the cached permissions
    client.force_login(staff)
    assert b'value="active"' in client.get(page).content
    client.post(f"/admin/operations/autonomybudget/{budget.pk}/move/", {"target": "active"})
    stored = AutonomyBudget.all_tenants.get(pk=budget.pk)
    assert (stored.status, stored.approved_by) == ("active", "user:controller")
    [change] = StatusChange.all_tenants.filter(process_id=budget.pk)
    assert (change.action, change.cause, change.path) == ("approve", "operator", "admin")


def test_the_history_row_carries_the_request_id(api_client_for, tenant_a):
    from tests.factories.operations import WorkflowRunFactory

    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    executor = api_client_for(tenant_a, scopes=["workflows:read", "workflows:execute"])
    response = executor.post(f"/v1/operations/processes/{run.pk}/control",
                             {"action": "pause"}, format="json",
                             HTTP_X_REQUEST_ID="support-ticket-4711")
    assert response.status_code == 200
    assert response.json()["history"][0]["request_id"] == "support-ticket-4711"
    assert StatusChange.all_tenants.get(process_id=run.pk).request_id == "support-ticket-4711"


@pytest.mark.django_db(transaction=True)
def test_listeners_hear_of_a_change_once_it_has_committed(tenant_a):
    from django.db import transaction

    from agent33.tenancy.context import tenant_scope
    from operations.signals import statuses_changed
    from operations.transitions import transition_apply
    from tests.factories.operations import WorkflowRunFactory
    from tests.origins import operator

    heard = []

    def listener(sender, changes, **kwargs):
        heard.append([(c.pk, c.process_id, c.state_before, c.state_after) for c in changes])

    statuses_changed.connect(listener)
    try:
        run = WorkflowRunFactory(tenant=tenant_a, status="running")
        with tenant_scope(tenant_a), transaction.atomic():
            transition_apply(type(run), run.pk, target="paused", origin=operator())
            assert heard == []  # not before the commit
        [[(change_id, process_id, before, after)]] = heard
        assert (process_id, before, after) == (run.pk, "running", "paused")
        assert StatusChange.all_tenants.get(pk=change_id).process_id == run.pk
        with pytest.raises(RuntimeError), tenant_scope(tenant_a), transaction.atomic():
            transition_apply(type(run), run.pk, target="running", origin=operator())
            raise RuntimeError("rolled back")
        assert len(heard) == 1  # a rolled-back change is never announced
    finally:
        statuses_changed.disconnect(listener)
