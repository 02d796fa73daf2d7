"""The Outcomes dashboard in a real browser (Playwright driving Debian's chromium)."""

from __future__ import annotations

import pytest

from outcomes.services import event_record_bulk

from .conftest import at, event_body

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def seed(tenant_a, tenant_b) -> None:
    events = []
    for metric in ("success_rate", "quality_score", "latency_ms", "cost_usd"):
        events += [
            event_body(metric_type=metric, domain="support", value=float(i % 7),
                       occurred_at=at(i).isoformat())
            for i in range(25)
        ]
        events += [
            event_body(metric_type=metric, domain="research", value=50.0 - i,
                       occurred_at=at(200 + i).isoformat())
            for i in range(12)
        ]
    event_record_bulk(tenant=tenant_a, events=events)
    event_record_bulk(
        tenant=tenant_b, events=[event_body(domain="secret-b-domain", value=float(i)) for i in
                                 range(3)]
    )


def chart_state(page) -> dict[str, tuple[int, str]]:
    """metric → (points drawn, polyline) for every chart on the page."""
    state = {}
    for card in page.locator("section.outcome-card").all():
        metric = card.get_attribute("data-metric")
        points = card.locator("svg.trend-chart circle.point").count()
        line = card.locator("svg.trend-chart polyline").get_attribute("points")
        state[metric] = (points, line)
    return state


def test_staff_dashboard_charts_and_domain_filter(
    staff_user_factory, staff_page, tenant_a, tenant_b
):
    seed(tenant_a, tenant_b)
    staff = staff_user_factory("outcomes-staff", tenants=[tenant_a])
    page = staff_page(staff)

    page.click("text=Outcomes dashboard")  # linked from the admin index
    page.wait_for_url("**/admin/outcomes/dashboard/")
    page.fill("#id_window", "10")
    page.click("#apply-filters")
    page.wait_for_url("**window=10**")
    before = chart_state(page)
    assert set(before) == {"success_rate", "quality_score", "latency_ms", "cost_usd"}
    assert all(points == 10 for points, _ in before.values())
    assert page.locator("svg.trend-chart").count() == 4
    assert page.locator("#recent-events tbody tr").count() == 20

    page.select_option("#id_domain", "support")
    page.click("#apply-filters")
    page.wait_for_url("**domain=support**")
    after = chart_state(page)
    assert all(points == 10 for points, _ in after.values())
    assert after["success_rate"][1] != before["success_rate"][1]
    assert set(page.locator("#recent-events td.event-domain").all_inner_texts()) == {"support"}

    # A tenant that was not granted never shows, even when asked for by name.
    for url in ("/admin/outcomes/dashboard/",
                "/admin/outcomes/dashboard/?tenant=tenant-b",
                "/admin/outcomes/outcomeevent/"):
        page.goto(page.live_url + url)
        assert "secret-b-domain" not in page.content()
    options = page.goto(page.live_url + "/admin/outcomes/dashboard/") and \
        page.locator("#id_domain option").all_inner_texts()
    assert "secret-b-domain" not in options
    assert set(options) == {"All domains", "research", "support"}
