"""Staff acting from the admin pages in a real browser (Playwright driving Debian's
chromium): approve and reject budgets, and the hub's "Needs attention" counts moving."""

from __future__ import annotations

import pytest

from operations.models import AutonomyBudget, StatusChange
from tests.factories.operations import AutonomyBudgetFactory, ImprovementIntakeFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_approve_one_pending_budget_and_reject_another(staff_user_factory, staff_page,
                                                             tenant_a):
    from playwright.sync_api import expect

    approve = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval", approved_by="")
    reject = AutonomyBudgetFactory(tenant=tenant_a, status="pending_approval")
    page = staff_page(staff_user_factory("approver", tenants=[tenant_a]))

    page.goto(f"{page.live_url}/admin/operations/autonomybudget/{approve.pk}/change/")
    page.fill("#staff-move-note", "limits look right")
    page.click("#staff-moves button[data-target=active]")
    expect(page.locator(".messagelist")).to_contain_text("Approve: pending_approval → active")
    expect(page.locator(".field-status")).to_contain_text("Active")
    expect(page.locator(".process-history")).to_contain_text("limits look right")
    expect(page.locator("#staff-moves button[data-target=active]")).to_have_count(0)

    page.goto(f"{page.live_url}/admin/operations/autonomybudget/{reject.pk}/change/")
    page.click("#staff-moves button[data-target=rejected]")
    expect(page.locator(".field-status")).to_contain_text("Rejected")
    expect(page.locator("#staff-moves")).to_have_count(0)  # rejected is final: no buttons

    approved = AutonomyBudget.all_tenants.get(pk=approve.pk)
    assert (approved.status, approved.approved_by) == ("active", "user:approver")
    assert AutonomyBudget.all_tenants.get(pk=reject.pk).status == "rejected"
    assert sorted(StatusChange.all_tenants.values_list("action", "path")) == [
        ("approve", "admin"), ("move", "admin")]


def test_needs_attention_counts_move_when_an_intake_is_triaged(staff_user_factory, staff_page,
                                                              tenant_a):
    from playwright.sync_api import expect

    intakes = [ImprovementIntakeFactory(tenant=tenant_a) for _ in range(2)]
    user = staff_user_factory("triager", tenants=[tenant_a])
    hub = staff_page(user)
    hub.goto(f"{hub.live_url}/admin/operations/hub/")
    waiting = hub.locator("#attention-improvementintake-submitted")
    expect(waiting.locator(".attention-count")).to_have_text("2")

    # Triage one in another tab: the hub's count follows without a reload.
    other = hub.context.new_page()
    other.goto(f"{hub.live_url}/admin/operations/improvementintake/{intakes[0].pk}/change/")
    other.click("#staff-moves button[data-target=triaged]")
    expect(other.locator(".field-status")).to_contain_text("Triaged")
    expect(waiting.locator(".attention-count")).to_have_text("1", timeout=5000)

    # The count links to the list filtered to exactly those intakes. Back on the hub's tab
    # first, as a person would be: a background tab draws no frames, and the panel it
    # redraws every refresh never looks still enough to click there.
    hub.bring_to_front()
    waiting.locator("a").click()
    expect(hub.locator("#result_list tbody tr")).to_have_count(1)
    expect(hub.locator("#result_list")).to_contain_text(intakes[1].title)


def test_from_a_decline_on_the_dashboard_to_a_triaged_intake(staff_user_factory, staff_page,
                                                             tenant_a):
    """The loop staff close: a trend declines, the dashboard links its intake, Triage."""
    from playwright.sync_api import expect

    from operations.models import ImprovementIntake
    from outcomes.services import event_record_bulk

    event_record_bulk(tenant=tenant_a, events=[
        {"domain": "agent.tasks", "event_type": "task", "metric_type": "success_rate",
         "value": value, "occurred_at": f"2026-11-01T10:00:{n:02d}Z"}
        for n, value in enumerate([1.0] * 6 + [0.0] * 6)
    ])
    intake = ImprovementIntake.all_tenants.get(tenant=tenant_a)  # opened by the decline

    page = staff_page(staff_user_factory("closer", tenants=[tenant_a]))
    page.goto(f"{page.live_url}/admin/outcomes/dashboard/")
    page.locator(f'a[href$="/improvementintake/{intake.pk}/change/"]').first.click()
    expect(page.locator(".field-status")).to_contain_text("Submitted")
    page.fill("#staff-move-note", "looking into it")
    page.click("#staff-moves button[data-target=triaged]")
    expect(page.locator(".field-status")).to_contain_text("Triaged")
    expect(page.locator(".process-history")).to_contain_text("looking into it")
    assert ImprovementIntake.all_tenants.get(pk=intake.pk).status == "triaged"
