"""The dashboard's per-domain table (DESIGN §7.1): one row per domain, declines first, read
from the trend snapshots that decline detection keeps."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from outcomes.models import OutcomeCount, OutcomeTrendSnapshot

from .conftest import at, event_body

pytestmark = pytest.mark.django_db

DASHBOARD = "/v1/outcomes/dashboard"


@pytest.fixture
def record(outcomes_a, django_capture_on_commit_callbacks):
    """POST a bulk and run what its commit triggers (decline detection, the snapshots)."""

    def post(events, client=outcomes_a):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/v1/outcomes/events/bulk", {"events": events},
                                   format="json")
        assert response.status_code == 201, response.content

    return post


def series(domain, values, *, metric="success_rate", start=0):
    return [
        event_body(domain=domain, metric_type=metric, value=value,
                   occurred_at=at(start + n).isoformat())
        for n, value in enumerate(values)
    ]


def test_a_small_declining_domain_comes_before_big_healthy_ones(outcomes_a, record):
    record(series("big", [0.5] * 290 + [0.9] * 10))  # improving, 300 events
    record(series("big", [100.0] * 40, metric="latency_ms"))  # stable
    record(series("medium", [0.7] * 60))  # stable, 60 events
    record(series("small", [1, 1, 1, 1, 0, 0, 0, 0]))  # declining, 8 events
    record(series("tiny", [0.5, 0.5]))

    domains = outcomes_a.get(DASHBOARD).json()["domains"]
    assert [row["domain"] for row in domains] == ["small", "big", "medium", "tiny"]
    assert domains[0] == {
        "domain": "small",
        "trends": {
            "success_rate": {"direction": "declining", "change_pct": -100.0, "sample_size": 8},
        },
    }
    big = domains[1]["trends"]
    assert list(big) == ["success_rate", "latency_ms"]  # only the metrics it has
    assert big["success_rate"]["direction"] == "improving"
    assert big["success_rate"]["sample_size"] == 20  # decline detection's window
    assert big["latency_ms"] == {"direction": "stable", "change_pct": 0.0, "sample_size": 20}


def test_the_table_keeps_decline_detections_window_whatever_window_says(outcomes_a, record):
    record(series("support", [0.9] * 30 + [0.1] * 2))
    body = outcomes_a.get(f"{DASHBOARD}?window=4").json()
    assert body["trends"][0]["sample_size"] == 4
    assert body["domains"][0]["trends"]["success_rate"]["sample_size"] == 20


def test_domains_limit_caps_the_rows_and_declines_are_the_last_cut(outcomes_a, record):
    for n in range(6):
        record(series(f"healthy-{n}", [0.5] * (20 - n)))
    record(series("failing", [0.9, 0.9, 0.2, 0.2]))
    body = outcomes_a.get(f"{DASHBOARD}?domains_limit=3").json()
    assert [row["domain"] for row in body["domains"]] == ["failing", "healthy-0", "healthy-1"]
    assert len(outcomes_a.get(DASHBOARD).json()["domains"]) == 7


def test_a_domain_filter_shows_that_domains_row_only(outcomes_a, record):
    record(series("support", [0.5, 0.6]) + series("coding", [0.9, 0.1]))
    body = outcomes_a.get(f"{DASHBOARD}?domain=support").json()
    assert [row["domain"] for row in body["domains"]] == ["support"]
    assert outcomes_a.get(f"{DASHBOARD}?domain=nothing-here").json()["domains"] == []


def test_the_table_follows_new_events(outcomes_a, record):
    record(series("support", [0.9, 0.9, 0.2, 0.2]))
    [row] = outcomes_a.get(DASHBOARD).json()["domains"]
    assert row["trends"]["success_rate"]["direction"] == "declining"
    record(series("support", [0.9] * 8, start=10))
    [row] = outcomes_a.get(DASHBOARD).json()["domains"]
    assert row["trends"]["success_rate"]["direction"] == "improving"
    assert row["trends"]["success_rate"]["sample_size"] == 12


def test_another_tenants_domains_never_show(outcomes_a, outcomes_b, record):
    record(series("secret-b", [0.9, 0.9, 0.1, 0.1]), client=outcomes_b)
    assert outcomes_a.get(DASHBOARD).json()["domains"] == []
    assert [row["domain"] for row in outcomes_b.get(DASHBOARD).json()["domains"]] == [
        "secret-b"
    ]


def test_rebuild_counts_rebuilds_the_snapshots_too(outcomes_a, record, tenant_a):
    record(series("support", [0.9, 0.9, 0.2, 0.2]) + series("coding", [1.0, 2.0],
                                                            metric="cost_usd"))
    before = outcomes_a.get(DASHBOARD).json()["domains"]
    OutcomeTrendSnapshot.all_tenants.filter(tenant=tenant_a, domain="coding").delete()
    OutcomeTrendSnapshot.all_tenants.filter(tenant=tenant_a).update(direction="stable")
    call_command("outcomes_rebuild_counts", "--tenant", "tenant-a")
    assert outcomes_a.get(DASHBOARD).json()["domains"] == before
    assert [row["domain"] for row in before] == ["support", "coding"]


def test_events_sent_one_by_one_keep_counts_and_table_as_one_bulk_does(
    outcomes_a, outcomes_b, record, tenant_a, tenant_b, django_capture_on_commit_callbacks
):
    """A single event updates its key's count and snapshot in place (one statement each);
    the rows must end up as a bulk of the same events leaves them. "zulu" has more events
    than "alpha" over two event types, so the table ranks it first only if the snapshot's
    event count follows every event of the domain, whatever its type."""
    events = [
        event_body(domain="zulu", event_type=f"e{n % 2}", value=0.5, occurred_at=at(n).isoformat())
        for n in range(6)
    ] + [event_body(domain="alpha", value=0.5, occurred_at=at(n).isoformat()) for n in range(4)]
    for event in events:
        with django_capture_on_commit_callbacks(execute=True):
            assert outcomes_a.post("/v1/outcomes/events", event, format="json").status_code == 201
    record(events, client=outcomes_b)

    def rows(tenant):
        counts = {(c.metric_type, c.domain, c.event_type): c.count
                  for c in OutcomeCount.all_tenants.filter(tenant=tenant)}
        snapshots = set(OutcomeTrendSnapshot.all_tenants.filter(tenant=tenant).values_list(
            "metric_type", "domain", "direction", "change_pct", "sample_size", "previous_avg",
            "current_avg", "event_count"))
        return counts, snapshots

    assert rows(tenant_a) == rows(tenant_b)
    assert rows(tenant_a)[0] == {
        ("success_rate", "zulu", "e0"): 3, ("success_rate", "zulu", "e1"): 3,
        ("success_rate", "alpha", "task_completed"): 4,
    }
    domains = outcomes_a.get(DASHBOARD).json()["domains"]
    assert [row["domain"] for row in domains] == ["zulu", "alpha"]
    assert domains == outcomes_b.get(DASHBOARD).json()["domains"]
