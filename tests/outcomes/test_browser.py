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


def test_a_small_declining_domain_is_on_the_first_screen(staff_user_factory, staff_page,
                                                         tenant_a):
    """DESIGN §7.1: a decline in a small domain is never hidden by large ones. The big
    domains' improving series dominate the all-domains charts; the table above them puts
    the small domain's decline first, visible without scrolling, linked to its intake."""
    from operations.models import ImprovementIntake

    events = [
        event_body(domain=f"big-{n}", metric_type=metric, value=0.5 if i < 290 else 0.9,
                   occurred_at=at(2000 + i).isoformat())
        for n in range(3)
        for metric in ("success_rate", "quality_score")
        for i in range(300)
    ]
    events += [
        event_body(domain=f"steady-{n:02}", value=0.7, occurred_at=at(400 + i).isoformat())
        for n in range(30)
        for i in range(12)
    ]
    event_record_bulk(tenant=tenant_a, events=events)
    event_record_bulk(tenant=tenant_a, events=[
        event_body(domain="small", value=value, occurred_at=at(i).isoformat())
        for i, value in enumerate([1, 1, 1, 1, 0, 0, 0, 0])
    ])
    intake = ImprovementIntake.all_tenants.get(tenant=tenant_a)

    page = staff_page(staff_user_factory("outcomes-staff", tenants=[tenant_a]))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(page.live_url + "/admin/outcomes/dashboard/")
    rows = page.locator("#domain-trends tbody tr.domain-row")
    assert rows.count() == 34
    first = rows.first
    assert first.get_attribute("data-domain") == "small"
    box = first.bounding_box()
    assert box is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= 800
    assert page.evaluate("window.scrollY") == 0
    cell = first.locator("td[data-metric=success_rate]")
    assert "declining" in cell.inner_text() and "-100.0%" in cell.inner_text()
    # The all-domains success rate, dominated by the big domains, does not decline.
    chart = page.locator("section.outcome-card[data-metric=success_rate] .trend-direction")
    assert "declining" not in chart.inner_text()
    assert chart.bounding_box()["y"] > box["y"]

    cell.locator("a.decline-intake").click()
    page.wait_for_url(f"**/admin/operations/improvementintake/{intake.pk}/change/")
    assert "success_rate declining in small" in page.content()


def test_charts_over_time_bucket_in_the_browsers_time_zone(
    staff_user_factory, staff_page, tenant_a, tenant_b
):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    kolkata = ZoneInfo("Asia/Kolkata")
    now = timezone.now()
    today = now.astimezone(kolkata).replace(hour=0, minute=0, second=0, microsecond=0)
    # Two events a minute either side of local midnight three days ago, and one today.
    midnight = today - timedelta(days=3)
    moments = [midnight - timedelta(minutes=1), midnight + timedelta(minutes=1),
               min(now, today + timedelta(minutes=5))]
    event_record_bulk(tenant=tenant_a, events=[
        event_body(metric_type="latency_ms", domain="api", value=100.0 * (i + 1),
                   occurred_at=moment.isoformat()) for i, moment in enumerate(moments)])
    event_record_bulk(tenant=tenant_b, events=[
        event_body(metric_type="latency_ms", domain="api", value=9999.0)])
    staff = staff_user_factory("series-staff", tenants=[tenant_a])
    page = staff_page(staff, timezone_id="Asia/Kolkata")

    def loaded(count: int):
        page.wait_for_selector(f"#series-panel[data-loaded='{count}'][aria-busy='false']")

    def latency_buckets() -> list[tuple[str, int]]:
        dots = page.locator("figure.series-chart[data-metric='latency_ms'] circle")
        return [(d.get_attribute("data-start"), int(d.get_attribute("data-count")))
                for d in dots.all()]

    page.goto(page.live_url + "/admin/outcomes/dashboard/?domain=api")
    loaded(1)
    # Chromium's ICU names the zone by its older IANA link.
    assert page.locator("#series-tz").inner_text() in ("Times in Asia/Kolkata",
                                                        "Times in Asia/Calcutta")
    page.select_option("#series-period", "7d")
    loaded(2)
    buckets = latency_buckets()
    assert len(buckets) == 8  # seven days back from now, in whole local days
    assert all(start.endswith("T00:00:00+05:30") for start, _ in buckets)
    counts = dict(buckets)
    assert counts[(midnight - timedelta(days=1)).date().isoformat() + "T00:00:00+05:30"] == 1
    assert counts[midnight.date().isoformat() + "T00:00:00+05:30"] == 1
    assert counts[today.date().isoformat() + "T00:00:00+05:30"] == 1
    assert sum(counts.values()) == 3  # tenant B's event never shows
    assert "9,999" not in page.content()
    assert "period=7d" in page.url

    page.select_option("#series-bucket", "hour")
    page.select_option("#series-period", "24h")
    loaded(4)
    hours = latency_buckets()
    assert len(hours) == 25
    assert all(start.endswith(":00:00+05:30") for start, _ in hours)

    page.select_option("#series-bucket", "minute")
    page.select_option("#series-period", "30d")
    loaded(6)
    assert page.locator("#series-error").is_visible()
    assert "More than 1,000 minute buckets" in page.locator("#series-error").inner_text()

    page.select_option("#series-bucket", "week")
    page.check("#series-compare")
    loaded(8)
    assert not page.locator("#series-error").is_visible()
    assert "previous avg" in page.locator(
        "figure.series-chart[data-metric='latency_ms'] .series-summary").inner_text()
    # The pickers are in the URL: a reload keeps them.
    page.reload()
    loaded(1)
    assert page.locator("#series-bucket").input_value() == "week"
    assert page.locator("#series-compare").is_checked()


def test_series_json_is_limited_to_granted_tenants(client, staff_user_factory, tenant_a,
                                                   tenant_b):
    staff = staff_user_factory("series-json", tenants=[tenant_a])
    client.force_login(staff)
    url = "/admin/outcomes/dashboard/series/"
    ok = client.get(url, {"tenant": tenant_a.slug, "metric_type": "latency_ms"})
    assert ok.status_code == 200 and ok.json()["summary"]["count"] == 0
    assert client.get(url, {"tenant": tenant_b.slug,
                            "metric_type": "latency_ms"}).status_code == 404
    bad = client.get(url, {"tenant": tenant_a.slug, "metric_type": "latency_ms",
                           "tz": "Nowhere/Land"})
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["tz"]
