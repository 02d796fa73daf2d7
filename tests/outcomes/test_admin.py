"""The staff pages: the Outcomes dashboard and the read-only events admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from guardian.shortcuts import assign_perm

from agent33.tenancy.staff import ACCESS_TENANT_PERM
from outcomes.services import event_record_bulk

from .conftest import at, event_body

DASHBOARD = "/admin/outcomes/dashboard/"
CHANGELIST = "/admin/outcomes/outcomeevent/"


@pytest.fixture
def make_staff(db, client):
    def build(username: str, tenants=(), *, superuser=False, perms=True):
        user = get_user_model().objects.create_user(
            username=username, password=None, is_staff=True, is_superuser=superuser
        )
        if perms and not superuser:
            user.user_permissions.set(
                Permission.objects.filter(content_type__app_label="outcomes")
            )
        for tenant in tenants:
            assign_perm(ACCESS_TENANT_PERM, user, tenant)
        client.force_login(user)
        return client

    return build


@pytest.fixture
def data(tenant_a, tenant_b):
    events = []
    for metric in ("success_rate", "quality_score", "latency_ms", "cost_usd"):
        events += [
            event_body(metric_type=metric, domain="support", value=float(i),
                       occurred_at=at(i).isoformat())
            for i in range(30)
        ]
        events += [
            event_body(metric_type=metric, domain="research", value=100.0 + i,
                       occurred_at=at(100 + i).isoformat())
            for i in range(5)
        ]
    event_record_bulk(tenant=tenant_a, events=events)
    event_record_bulk(
        tenant=tenant_b,
        events=[event_body(domain="secret-b-domain", event_type="secret-b-type", value=0.1)],
    )


def point_counts(html: str) -> dict[str, int]:
    cards = re.findall(r'data-metric="(\w+)".*?data-points="(\d+)"', html, re.S)
    return {metric: int(points) for metric, points in cards}


def test_dashboard_draws_four_charts_with_window_points(make_staff, tenant_a, data):
    client = make_staff("staff-a", [tenant_a])
    response = client.get(DASHBOARD + "?window=10")
    assert response.status_code == 200
    html = response.content.decode()
    assert point_counts(html) == {
        "success_rate": 10, "quality_score": 10, "latency_ms": 10, "cost_usd": 10
    }
    assert html.count('class="point"') == 40
    # The one script (the charts over time) is this service's own static file: no inline
    # code, no other host.
    content = html.split('<div id="content-main"')[1]
    assert re.findall(r"<script[^>]*>", content) == [
        '<script src="/static/outcomes/series.js" defer>']
    assert "improving" in html and "▲" in html
    assert "secret-b-domain" not in html


def test_dashboard_filters_change_the_charts(make_staff, tenant_a, data):
    client = make_staff("staff-a", [tenant_a])
    research = client.get(DASHBOARD + "?domain=research&window=20").content.decode()
    assert set(point_counts(research).values()) == {5}
    one_metric = client.get(DASHBOARD + "?metric=latency_ms&window=7").content.decode()
    assert point_counts(one_metric) == {"latency_ms": 7}
    # until includes its whole day; a range before the data has nothing in it
    empty = client.get(DASHBOARD + "?since=2025-01-01&until=2025-12-31").content.decode()
    assert set(point_counts(empty).values()) == {0}
    assert "No events match these filters." in empty
    day = client.get(DASHBOARD + "?since=2026-01-01&until=2026-01-01").content.decode()
    assert set(point_counts(day).values()) == {20}


def test_dashboard_shows_errors_and_falls_back_to_defaults(make_staff, tenant_a, data):
    client = make_staff("staff-a", [tenant_a])
    response = client.get(DASHBOARD + "?window=5000&domain=nope&since=2026-02-01&until=2026-01-01")
    assert response.status_code == 200
    html = response.content.decode()
    assert "errorlist" in html
    assert set(point_counts(html).values()) == {20}


def test_staff_never_see_a_tenant_they_were_not_granted(make_staff, tenant_a, tenant_b, data):
    client = make_staff("staff-a", [tenant_a])
    for url in (DASHBOARD, DASHBOARD + "?tenant=tenant-b", DASHBOARD + "?tenant=tenant-b&domain="
                "secret-b-domain", CHANGELIST, CHANGELIST + "?tenant=tenant-b"):
        html = client.get(url).content.decode()
        assert "secret-b-domain" not in html, url
        assert "secret-b-type" not in html, url
    assert 'value="tenant-b"' not in client.get(DASHBOARD).content.decode()


def test_tenant_selector_for_staff_with_several_tenants(make_staff, tenant_a, tenant_b, data):
    client = make_staff("staff-ab", [tenant_a, tenant_b])
    html = client.get(DASHBOARD).content.decode()
    assert 'name="tenant"' in html and 'value="tenant-b"' in html
    b_page = client.get(DASHBOARD + "?tenant=tenant-b").content.decode()
    assert "secret-b-domain" in b_page
    assert point_counts(b_page)["success_rate"] == 1


def test_superuser_sees_every_tenant(make_staff, data):
    client = make_staff("root", superuser=True)
    assert "secret-b-domain" in client.get(DASHBOARD + "?tenant=tenant-b").content.decode()


def test_dashboard_needs_the_view_permission_and_a_login(make_staff, tenant_a, client):
    assert client.get(DASHBOARD).status_code == 302  # to the login page
    no_perm = make_staff("no-perm", [tenant_a], perms=False)
    assert no_perm.get(DASHBOARD).status_code == 403


def test_staff_without_tenants_get_a_message(make_staff):
    html = make_staff("lonely").get(DASHBOARD).content.decode()
    assert "not been granted any tenant" in html


def test_admin_index_links_the_dashboard(make_staff, tenant_a):
    html = make_staff("staff-a", [tenant_a]).get("/admin/").content.decode()
    assert DASHBOARD in html


def test_events_admin_is_read_only_with_filters(make_staff, tenant_a, data):
    client = make_staff("staff-a", [tenant_a])
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for fragment in ("?metric_type__exact=latency_ms", "?domain=research", "?tenant=tenant-a",
                     "occurred_at__gte", 'id="searchbar"', "occurred_at__year="):
        assert fragment in html, fragment
    query = "?domain=research&metric_type__exact=cost_usd"
    filtered = client.get(CHANGELIST + query).content.decode()
    assert filtered.count('class="field-metric_type"') == 5
    searched = client.get(CHANGELIST + "?q=research").content.decode()
    assert searched.count('class="field-domain"') == 20
    assert client.get(CHANGELIST + "add/").status_code == 403
    pk = re.search(r"/admin/outcomes/outcomeevent/(outcome-[0-9a-f]+)/change/", html).group(1)
    detail = client.get(f"{CHANGELIST}{pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert client.post(f"{CHANGELIST}{pk}/delete/", {"post": "yes"}).status_code == 403


def test_events_admin_queries_do_not_grow_with_rows(
    make_staff, tenant_a, data, django_assert_max_num_queries
):
    client = make_staff("staff-a", [tenant_a])
    with django_assert_max_num_queries(14):
        client.get(CHANGELIST)
    with django_assert_max_num_queries(15):  # the per-domain table is one more
        client.get(DASHBOARD)


@pytest.mark.parametrize(
    "query",
    [
        "outcomeevent/?domain=a%00b",
        "outcomeevent/?tenant=a%00b",
        "outcomeevent/?q=a%00b",
        "outcomeevent/a%00b/change/",
        "dashboard/?domain=a%00b&tenant=a%00b&window=%00&since=%00",
        "dashboard/?since=0001-01-01&until=9999-12-31",
    ],
)
def test_nul_characters_in_admin_urls_are_never_a_500(make_staff, tenant_a, data, query):
    response = make_staff("staff-a", [tenant_a]).get(f"/admin/outcomes/{query}")
    assert response.status_code < 500
