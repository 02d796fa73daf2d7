"""The three apps as one product, in a real browser (issue 8)."""

from __future__ import annotations

import pytest

from multimodal.models import MultimodalRequest
from operations.models import ImprovementIntake, StatusChange

# The page refreshes every 1.5 s (its data-refresh-ms; test_hub_refresh_interval pins it). A
# change must show within a few refreshes; the allowance is generous so a loaded machine does
# not fail it, while the interval itself is checked exactly.
UPDATE_WITHIN_MS = 15_000

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_hub_page_shows_and_cancels_multimodal_requests_with_the_stats_panel(
    staff_user_factory, staff_page, api_client_for, tenant_a, tenant_b
):
    from playwright.sync_api import expect

    runtime = api_client_for(tenant_a, scopes=["multimodal:write"])
    done = runtime.post("/v1/multimodal/requests",
                        {"modality": "text_to_speech", "input_text": "ready"}, format="json")
    assert done.status_code == 201
    waiting = runtime.post(
        "/v1/multimodal/requests",
        {"modality": "text_to_speech", "input_text": "later", "execute_now": False},
        format="json",
    ).json()
    foreign = api_client_for(tenant_b, scopes=["multimodal:write"]).post(
        "/v1/multimodal/requests",
        {"modality": "text_to_speech", "input_text": "not yours", "execute_now": False},
        format="json",
    ).json()

    page = staff_page(staff_user_factory("mm-operator", tenants=[tenant_a]))
    page.goto(f"{page.live_url}/admin/operations/hub/")
    row = page.locator(f'tr[data-process-id="{waiting["id"]}"]')
    expect(row).to_be_visible(timeout=UPDATE_WITHIN_MS)
    expect(row.locator(".hub-type")).to_have_text("multimodal_request")
    expect(row.locator(".hub-name")).to_have_text("text_to_speech (espeak)")
    expect(page.locator(f'tr[data-process-id="{foreign["id"]}"]')).to_have_count(0)

    panel = page.locator("#multimodal-panel")
    stats_row = panel.locator('tr[data-modality="text_to_speech"][data-provider="espeak"]')
    expect(stats_row).to_be_visible()
    expect(stats_row.locator(".mm-completed")).to_have_text("1")
    expect(stats_row.locator(".mm-total")).to_have_text("2")  # tenant B's is not counted

    page.once("dialog", lambda dialog: dialog.accept("no longer needed"))
    row.locator("button[data-action=cancel]").click()
    expect(row.locator(".hub-status")).to_have_text("cancelled", timeout=UPDATE_WITHIN_MS)
    assert MultimodalRequest.all_tenants.get(pk=waiting["id"]).state == "cancelled"
    assert StatusChange.all_tenants.get(process_id=waiting["id"]).reason == "no longer needed"
    # The panel refreshes with the table.
    expect(stats_row.locator(".mm-cancelled")).to_have_text("1", timeout=UPDATE_WITHIN_MS)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_outcomes_page_links_a_declining_trend_to_its_intake(
    staff_user_factory, staff_page, api_client_for, tenant_a
):
    from playwright.sync_api import expect

    writer = api_client_for(tenant_a, scopes=["outcomes:write"])
    for value in (0.95, 0.95, 0.9, 0.4, 0.3, 0.2):
        response = writer.post(
            "/v1/outcomes/events",
            {"domain": "checkout", "event_type": "run", "metric_type": "success_rate",
             "value": value},
            format="json",
        )
        assert response.status_code == 201
    intake = ImprovementIntake.all_tenants.get(tenant=tenant_a)

    page = staff_page(staff_user_factory("analyst", tenants=[tenant_a]))
    page.goto(f"{page.live_url}/admin/outcomes/dashboard/?domain=checkout")
    card = page.locator('section.outcome-card[data-metric="success_rate"]')
    expect(card.locator(".trend-direction")).to_contain_text("declining")
    link = card.locator("a.decline-intake")
    expect(link).to_have_text(intake.title)
    link.click()
    page.wait_for_url(f"**/admin/operations/improvementintake/{intake.pk}/change/")
    expect(page.locator("body")).to_contain_text(intake.title)
