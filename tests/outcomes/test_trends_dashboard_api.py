"""Trends and the dashboard through the API (DESIGN §5.3)."""

from __future__ import annotations

import pytest

from agent33.auth.scopes import OUTCOMES_READ
from tests.factories.outcomes import OutcomeEventFactory

from .conftest import at, event_body

TRENDS = "/v1/outcomes/trends"
DASHBOARD = "/v1/outcomes/dashboard"


def record(client, events: list[dict]) -> None:
    response = client.post("/v1/outcomes/events/bulk", {"events": events}, format="json")
    assert response.status_code == 201, response.content


def series(metric: str, values: list[float], *, domain: str = "support", start: int = 0):
    return [
        event_body(
            metric_type=metric, value=v, domain=domain, occurred_at=at(start + i).isoformat()
        )
        for i, v in enumerate(values)
    ]


@pytest.mark.django_db
def test_trend_shape_and_maths(outcomes_a):
    record(outcomes_a, series("success_rate", [0.5, 0.5, 0.7, 0.8]))
    response = outcomes_a.get(f"{TRENDS}/success_rate")
    assert response.status_code == 200
    assert response.json() == {
        "metric_type": "success_rate",
        "domain": "all",
        "event_type": None,
        "window": 20,
        "direction": "improving",
        "sample_size": 4,
        "values": [0.5, 0.5, 0.7, 0.8],
        "previous_avg": 0.5,
        "current_avg": 0.75,
        "change_pct": pytest.approx(50.0),
    }


@pytest.mark.django_db
def test_trend_takes_the_latest_window_by_occurred_at_oldest_first(outcomes_a):
    # Recorded out of order: the window is chosen by occurred_at, not by insertion.
    events = series("quality_score", [float(i) for i in range(10)])
    record(outcomes_a, events[5:] + events[:5])
    body = outcomes_a.get(f"{TRENDS}/quality_score?window=4").json()
    assert body["values"] == [6.0, 7.0, 8.0, 9.0]
    assert body["window"] == 4
    assert body["sample_size"] == 4
    assert body["previous_avg"] == 6.5
    assert body["current_avg"] == 8.5


@pytest.mark.django_db
def test_trend_ties_on_occurred_at_are_broken_by_id(outcomes_a, tenant_a):
    created = [
        OutcomeEventFactory(tenant=tenant_a, value=float(i), occurred_at=at(0)) for i in range(12)
    ]
    later = OutcomeEventFactory(tenant=tenant_a, value=100.0, occurred_at=at(1))
    by_id = sorted(created, key=lambda e: e.pk)
    body = outcomes_a.get(f"{TRENDS}/success_rate?window=5").json()
    # the latest 5 by (occurred_at, id): the event at t+1 and the 4 highest ids at t
    assert body["values"] == [e.value for e in by_id[-4:]] + [later.value]
    again = outcomes_a.get(f"{TRENDS}/success_rate?window=5").json()
    assert again == body


@pytest.mark.django_db
def test_lower_is_better_for_latency_and_cost(outcomes_a):
    record(outcomes_a, series("latency_ms", [900, 1000, 500, 400]))
    record(outcomes_a, series("cost_usd", [0.01, 0.01, 0.02, 0.02]))
    latency = outcomes_a.get(f"{TRENDS}/latency_ms").json()
    assert latency["direction"] == "improving"
    assert latency["change_pct"] == pytest.approx(52.631578947)
    cost = outcomes_a.get(f"{TRENDS}/cost_usd").json()
    assert cost["direction"] == "declining"
    assert cost["change_pct"] == pytest.approx(-100.0)


@pytest.mark.django_db
def test_trend_with_one_or_no_values_is_stable(outcomes_a):
    empty = outcomes_a.get(f"{TRENDS}/cost_usd").json()
    assert (empty["direction"], empty["sample_size"], empty["values"]) == ("stable", 0, [])
    assert (empty["previous_avg"], empty["current_avg"], empty["change_pct"]) == (0.0, 0.0, 0.0)
    record(outcomes_a, series("cost_usd", [0.25]))
    one = outcomes_a.get(f"{TRENDS}/cost_usd").json()
    assert (one["direction"], one["previous_avg"], one["current_avg"]) == ("stable", 0.25, 0.25)


@pytest.mark.django_db
def test_trend_domain_filter_and_all(outcomes_a):
    record(outcomes_a, series("success_rate", [0.1, 0.2], domain="coding"))
    record(outcomes_a, series("success_rate", [0.9, 0.3], domain="support", start=10))
    assert outcomes_a.get(f"{TRENDS}/success_rate?domain=coding").json()["values"] == [0.1, 0.2]
    support = outcomes_a.get(f"{TRENDS}/success_rate?domain=support").json()
    assert (support["domain"], support["direction"]) == ("support", "declining")
    for query in ("", "?domain=", "?domain=all"):
        body = outcomes_a.get(f"{TRENDS}/success_rate{query}").json()
        assert body["domain"] == "all"
        assert body["values"] == [0.1, 0.2, 0.9, 0.3]
    assert outcomes_a.get(f"{TRENDS}/success_rate?domain=other").json()["sample_size"] == 0


@pytest.mark.django_db
def test_trend_unknown_metric_is_404(outcomes_a):
    response = outcomes_a.get(f"{TRENDS}/revenue")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "revenue" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("window", ["0", "1001", "-1", "abc", "1.5", "1e3"])
def test_trend_window_out_of_range_is_400(outcomes_a, window):
    response = outcomes_a.get(f"{TRENDS}/success_rate?window={window}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["window"]


@pytest.mark.django_db
def test_trend_window_bounds(outcomes_a):
    record(outcomes_a, series("success_rate", [float(i) for i in range(1005)]))
    assert outcomes_a.get(f"{TRENDS}/success_rate?window=1").json()["values"] == [1004.0]
    body = outcomes_a.get(f"{TRENDS}/success_rate?window=1000").json()
    assert body["sample_size"] == 1000
    assert body["values"][0] == 5.0


@pytest.mark.django_db
def test_trends_never_show_another_tenants_events(outcomes_a, outcomes_b):
    record(outcomes_b, series("success_rate", [1.0, 0.1]))
    body = outcomes_a.get(f"{TRENDS}/success_rate").json()
    assert body["sample_size"] == 0
    dashboard = outcomes_a.get(DASHBOARD).json()
    assert dashboard["recent_events"] == []
    assert dashboard["summary"]["total_events"] == 0


@pytest.mark.django_db
def test_tenant_token_naming_another_tenant_gets_404(outcomes_a, tenant_b):
    for path in (f"{TRENDS}/success_rate", DASHBOARD):
        response = outcomes_a.get(f"{path}?tenant_id={tenant_b.slug}")
        assert response.status_code == 404
        own = outcomes_a.get(f"{path}?tenant_id=tenant-a")
        assert own.status_code == 200


@pytest.mark.django_db
def test_operator_reads_a_named_tenant(api_client_for, outcomes_a):
    record(outcomes_a, series("success_rate", [0.2, 0.4]))
    operator = api_client_for(None, scopes=[OUTCOMES_READ])
    for path in (f"{TRENDS}/success_rate", DASHBOARD):
        missing = operator.get(path)
        assert missing.status_code == 400
        assert "tenant_id" in missing.json()["errors"]
        assert operator.get(f"{path}?tenant_id=nobody").status_code == 404
    assert operator.get(f"{TRENDS}/success_rate?tenant_id=tenant-a").json()["sample_size"] == 2
    listed = operator.get("/v1/outcomes/events?tenant_id=tenant-a").json()
    assert len(listed) == 2


@pytest.mark.django_db
def test_dashboard_shape(outcomes_a):
    record(outcomes_a, series("success_rate", [0.5, 0.6, 0.7], domain="support"))
    record(outcomes_a, series("latency_ms", [300.0, 200.0], domain="coding", start=10))
    record(
        outcomes_a,
        [event_body(domain="alpha", event_type="review", metric_type="success_rate",
                    value=1.0, occurred_at=at(20).isoformat())],
    )
    response = outcomes_a.get(DASHBOARD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"trends", "recent_events", "summary", "domains"}
    assert [t["metric_type"] for t in body["trends"]] == [
        "success_rate", "quality_score", "latency_ms", "cost_usd"
    ]
    latency = body["trends"][2]
    assert (latency["values"], latency["direction"], latency["domain"]) == (
        [300.0, 200.0], "improving", "all"
    )
    assert body["trends"][1]["sample_size"] == 0
    recent = body["recent_events"]
    assert len(recent) == 6
    assert [e["occurred_at"] for e in recent] == sorted(
        (e["occurred_at"] for e in recent), reverse=True
    )
    assert recent[0]["domain"] == "alpha"
    assert body["summary"] == {
        "total_events": 6,
        "domains": ["alpha", "coding", "support"],
        "event_types": ["review", "task_completed"],
        "metric_counts": {"success_rate": 4, "quality_score": 0, "latency_ms": 2, "cost_usd": 0},
    }


@pytest.mark.django_db
def test_dashboard_filters(outcomes_a):
    record(outcomes_a, series("success_rate", [float(i) for i in range(30)], domain="support"))
    record(outcomes_a, series("cost_usd", [1.0, 2.0, 3.0], domain="coding", start=100))
    body = outcomes_a.get(f"{DASHBOARD}?domain=support&window=5&recent_limit=3").json()
    assert all(t["domain"] == "support" and t["window"] == 5 for t in body["trends"])
    assert body["trends"][0]["values"] == [25.0, 26.0, 27.0, 28.0, 29.0]
    assert body["trends"][3]["sample_size"] == 0
    assert [e["value"] for e in body["recent_events"]] == [29.0, 28.0, 27.0]
    assert body["summary"]["domains"] == ["support"]
    assert body["summary"]["total_events"] == 30
    assert body["summary"]["metric_counts"]["cost_usd"] == 0
    default = outcomes_a.get(DASHBOARD).json()
    assert len(default["recent_events"]) == 10
    assert default["trends"][0]["window"] == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("recent_limit=0", "recent_limit"),
        ("recent_limit=101", "recent_limit"),
        ("recent_limit=x", "recent_limit"),
        ("window=0", "window"),
        ("window=1001", "window"),
        ("domain=" + "d" * 201, "domain"),
        ("domains_limit=0", "domains_limit"),
        ("domains_limit=501", "domains_limit"),
        ("domains_limit=many", "domains_limit"),
    ],
)
def test_dashboard_bad_query_is_400(outcomes_a, query, field):
    response = outcomes_a.get(f"{DASHBOARD}?{query}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [4, 400])
def test_dashboard_and_trend_queries_do_not_grow_with_data(
    outcomes_a, django_assert_max_num_queries, rows
):
    outcomes_a.get(DASHBOARD)  # the token's last-use stamp is written once
    events = []
    for metric in ("success_rate", "quality_score", "latency_ms", "cost_usd"):
        events += [
            event_body(metric_type=metric, value=float(i), domain=f"d{i % 7}",
                       event_type=f"t{i % 3}", occurred_at=at(i).isoformat())
            for i in range(rows)
        ]
    record(outcomes_a, events)
    outcomes_a.get(DASHBOARD)  # the stamp again: a slow machine may take a minute to record
    # token lookup + intakes + four trends + recent events + summary + domains
    with django_assert_max_num_queries(8):
        body = outcomes_a.get(f"{DASHBOARD}?window=1000&recent_limit=100").json()
    assert body["summary"]["total_events"] == 4 * rows
    with django_assert_max_num_queries(8):
        outcomes_a.get(f"{DASHBOARD}?domain=d1")
    with django_assert_max_num_queries(2):
        outcomes_a.get(f"{TRENDS}/latency_ms?window=1000&domain=d3")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"{TRENDS}/success_rate?domain=a%00b",
        f"{DASHBOARD}?domain=a%00b",
        f"{TRENDS}/success_rate?tenant_id=a%00b",
        "/v1/outcomes/events?domain=a%00b",
        "/v1/outcomes/events?event_type=a%00b",
        "/v1/outcomes/events?tenant_id=a%00b",
        "/v1/outcomes/events/outcome-%00",
        f"{TRENDS}/success%00rate",
    ],
)
def test_nul_characters_in_the_query_are_never_a_500(outcomes_a, url):
    # PostgreSQL refuses NUL in text parameters; this runs in the PG pass too.
    assert outcomes_a.get(url).status_code in (400, 404)
