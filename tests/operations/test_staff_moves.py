"""Staff act from the admin pages: an intake's and a budget's buttons, the lists' bulk moves,
and what staff without a grant, without the permission or without a CSRF token get."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agent33.tenancy.staff import ACCESS_TENANT_PERM
from operations.models import AutonomyBudget, ImprovementIntake, StatusChange
from tests.factories.operations import AutonomyBudgetFactory, ImprovementIntakeFactory

pytestmark = pytest.mark.django_db

INTAKES = "/admin/operations/improvementintake/"
BUDGETS = "/admin/operations/autonomybudget/"


@pytest.fixture
def staff(django_user_model, tenant_a):
    def build(username="alice", *, tenants=(tenant_a,), control=True, csrf=False):
        user = django_user_model.objects.create_user(username, password=None, is_staff=True)
        perms = Permission.objects.filter(content_type__app_label="operations")
        if not control:
            perms = perms.exclude(codename="control_process")
        user.user_permissions.set(perms)
        for tenant in tenants:
            assign_perm(ACCESS_TENANT_PERM, user, tenant)
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user)
        return client

    return build


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_an_intake_page_offers_its_next_statuses_and_moves_with_a_note(staff, tenant_a,
                                                                       api_client_for):
    client = staff()
    intake = ImprovementIntakeFactory(tenant=tenant_a, status="analyzing")
    page = client.get(f"{INTAKES}{intake.pk}/change/")
    assert page.status_code == 200
    assert page.context["staff_moves"] == [
        ("accepted", "Accept"), ("deferred", "Defer"), ("rejected", "Reject"),
    ]
    assert b'value="deferred"' in page.content and b'name="csrfmiddlewaretoken"' in page.content

    response = client.post(f"{INTAKES}{intake.pk}/move/",
                           {"target": "deferred", "note": "after the Q3 freeze"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{INTAKES}{intake.pk}/change/"
    assert _messages(response) == ["Defer: analyzing → deferred."]
    assert ImprovementIntake.all_tenants.get(pk=intake.pk).status == "deferred"
    # The page shows the new status, its next moves and the history at once.
    assert response.context["staff_moves"] == [("triaged", "Triage")]
    assert b"after the Q3 freeze" in response.content and b"user:alice" in response.content

    # The API's process detail shows the same history entry.
    detail = api_client_for(tenant_a, scopes=["workflows:read"]).get(
        f"/v1/operations/processes/{intake.pk}").json()
    [entry] = detail["control_history"]
    assert entry["action"] == "move" and entry["actor"] == "user:alice"
    assert (entry["state_before"], entry["state_after"]) == ("analyzing", "deferred")
    assert entry["reason"] == "after the Q3 freeze"


def test_approving_a_budget_records_the_staff_member_as_approver(staff, tenant_a):
    client = staff("bob")
    waiting = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval", approved_by="")
    page = client.get(f"{BUDGETS}{waiting.pk}/change/")
    assert page.context["staff_moves"] == [("active", "Approve"), ("rejected", "Reject")]

    client.post(f"{BUDGETS}{waiting.pk}/move/", {"target": "active"})
    budget = AutonomyBudget.all_tenants.get(pk=waiting.pk)
    assert (budget.status, budget.approved_by) == ("active", "user:bob")
    # An active budget's page offers its other moves, not approval.
    page = client.get(f"{BUDGETS}{waiting.pk}/change/")
    assert page.context["staff_moves"] == [
        ("suspended", "Suspend"), ("expired", "Expire"), ("completed", "Complete"),
    ]


def test_an_illegal_move_shows_the_conflicts_reason_and_changes_nothing(staff, tenant_a):
    client = staff()
    expired = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval",
                                    expires_at=timezone.now() - timedelta(hours=1))
    page = client.get(f"{BUDGETS}{expired.pk}/change/")
    assert page.context["staff_moves"] == [("rejected", "Reject")]  # no Approve offered

    response = client.post(f"{BUDGETS}{expired.pk}/move/", {"target": "active"}, follow=True)
    [message] = _messages(response)
    assert message.startswith(f"Cannot activate budget {expired.pk}: it expired at")
    response = client.post(f"{BUDGETS}{expired.pk}/move/", {"target": "nonsense"}, follow=True)
    assert _messages(response) == [
        f"Cannot move autonomy budget {expired.pk} from 'pending_approval' to 'nonsense' "
        "(from 'pending_approval' it may move to: active, rejected)."
    ]
    assert AutonomyBudget.all_tenants.get(pk=expired.pk).status == "pending_approval"
    assert not StatusChange.all_tenants.exists()


def test_staff_without_a_grant_get_404_and_change_nothing(staff, tenant_a, tenant_b):
    client = staff(tenants=(tenant_b,))
    intake = ImprovementIntakeFactory(tenant=tenant_a)
    assert client.post(f"{INTAKES}{intake.pk}/move/", {"target": "triaged"}).status_code == 404
    response = client.get(f"{INTAKES}{intake.pk}/change/")
    assert response.status_code == 302  # the admin's "does not exist" redirect to its index
    assert ImprovementIntake.all_tenants.get(pk=intake.pk).status == "submitted"
    assert not StatusChange.all_tenants.exists()


def test_staff_without_the_permission_see_no_buttons_and_get_403(staff, tenant_a):
    client = staff(control=False)
    intake = ImprovementIntakeFactory(tenant=tenant_a)
    assert client.get(f"{INTAKES}{intake.pk}/change/").context["staff_moves"] == []
    assert client.post(f"{INTAKES}{intake.pk}/move/", {"target": "triaged"}).status_code == 403
    assert ImprovementIntake.all_tenants.get(pk=intake.pk).status == "submitted"


def test_moves_are_posts_with_a_csrf_token(staff, tenant_a):
    client = staff(csrf=True)
    intake = ImprovementIntakeFactory(tenant=tenant_a)
    assert client.get(f"{INTAKES}{intake.pk}/move/").status_code == 405
    assert client.post(f"{INTAKES}{intake.pk}/move/", {"target": "triaged"}).status_code == 403
    assert ImprovementIntake.all_tenants.get(pk=intake.pk).status == "submitted"


def test_bulk_moves_apply_to_each_row_and_report_refusals(staff, tenant_a):
    client = staff()
    submitted = [ImprovementIntakeFactory(tenant=tenant_a) for _ in range(2)]
    accepted = ImprovementIntakeFactory(tenant=tenant_a, status="accepted")
    response = client.post(INTAKES, {
        "action": "move_triaged", "reason": "weekly triage",
        "_selected_action": [i.pk for i in [*submitted, accepted]],
    }, follow=True)
    messages = _messages(response)
    assert messages[0] == "Triage: 2 process(es)."
    assert messages[1].startswith(f"Skipped {accepted.pk}: Cannot move improvement intake")
    statuses = dict(ImprovementIntake.all_tenants.values_list("pk", "status"))
    assert [statuses[i.pk] for i in submitted] == ["triaged", "triaged"]
    assert statuses[accepted.pk] == "accepted"
    assert set(StatusChange.all_tenants.values_list("reason", flat=True)) == {"weekly triage"}


def test_bulk_approve_and_reject_touch_only_budgets_waiting_for_approval(staff, tenant_a):
    client = staff("carol")
    waiting = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    draft = AutonomyBudgetFactory(tenant=tenant_a, status="draft")
    response = client.post(BUDGETS, {
        "action": "move_approve", "_selected_action": [waiting.pk, draft.pk],
    }, follow=True)
    assert _messages(response) == [
        "Approve: 1 process(es).",
        f"Skipped {draft.pk}: Cannot approve autonomy budget {draft.pk}: it is 'draft', and "
        "approve needs 'pending_approval'.",
    ]
    assert AutonomyBudget.all_tenants.get(pk=waiting.pk).approved_by == "user:carol"
    assert AutonomyBudget.all_tenants.get(pk=draft.pk).status == "draft"

    other = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    client.post(BUDGETS, {"action": "move_reject", "_selected_action": [other.pk]})
    assert AutonomyBudget.all_tenants.get(pk=other.pk).status == "rejected"


def test_the_hub_lists_what_needs_attention_in_the_staff_members_tenants(staff, tenant_a,
                                                                         tenant_b):
    client = staff()
    intake = ImprovementIntakeFactory(tenant=tenant_a)
    ImprovementIntakeFactory(tenant=tenant_a, status="triaged")
    AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    ImprovementIntakeFactory(tenant=tenant_b)  # not granted: not counted
    AutonomyBudgetFactory(tenant=tenant_b, status="pending_approval")

    def attention():
        panel = client.get("/admin/operations/hub/", {"format": "json", "panels": "1"})
        return panel.json()["panels"]["attention"]

    html = attention()
    assert 'id="attention-improvementintake-submitted" data-count="1"' in html
    assert 'id="attention-autonomybudget-pending_approval" data-count="1"' in html
    assert f'href="{INTAKES}?status__exact=submitted"' in html
    assert f'href="{BUDGETS}?status__exact=pending_approval"' in html

    client.post(f"{INTAKES}{intake.pk}/move/", {"target": "triaged"})
    assert 'id="attention-improvementintake-submitted" data-count="0"' in attention()
    # The page itself renders the panel above the table on first load.
    page = client.get("/admin/operations/hub/").content.decode()
    assert page.index('id="attention-panel"') < page.index('id="hub-table"')
