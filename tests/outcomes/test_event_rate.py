"""A tenant's outcome events per minute through the API (outcomes/limits.py): one tenant
sending bulks in a loop cannot take the machine from the others."""

from __future__ import annotations

import pytest

from outcomes.models import OutcomeEvent
from tests.outcomes.conftest import event_body

pytestmark = pytest.mark.django_db

BULK = "/v1/outcomes/events/bulk"


@pytest.fixture
def allowance(settings):
    """20,000 events a minute (the clock is held 30 s into one: tests/conftest.py). The
    counts live in the database (no Redis): each test's own."""
    settings.AGENT33_EVENTS_PER_MINUTE = 20_000


def bulk(client, count: int, domain: str = "d"):
    return client.post(BULK, {"events": [event_body(domain=domain)] * count}, format="json")


def test_a_tenant_over_its_allowance_gets_429_and_stores_nothing(allowance, outcomes_a,
                                                                 outcomes_b, tenant_a):
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert bulk(outcomes_a, 10_000).status_code == 201
    refused = bulk(outcomes_a, 1)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "event_rate_exceeded"
    assert "20,000" in body["detail"] and "AGENT33_EVENTS_PER_MINUTE" in body["detail"]
    assert refused.headers["Retry-After"] == "30"  # to the next minute
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == 20_000
    # Another tenant's allowance is its own.
    assert bulk(outcomes_b, 10).status_code == 201


def test_a_refused_bulk_takes_nothing_from_the_allowance(allowance, outcomes_a):
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert bulk(outcomes_a, 10_001).status_code in (400, 429)  # over the bulk limit anyway
    assert bulk(outcomes_a, 9_000).status_code == 201
    assert bulk(outcomes_a, 5_000).status_code == 429  # would make 24,000
    assert bulk(outcomes_a, 1_000).status_code == 201  # exactly 20,000


def test_refused_bulks_of_invalid_events_charge_nothing(settings, outcomes_a, tenant_a):
    """Issue 23: eight bulks of 10,000 invalid events (each a 400) used to spend the whole
    default allowance of 60,000, and the next valid event got 429."""
    from agent33.auth import counters

    settings.AGENT33_EVENTS_PER_MINUTE = 60_000
    invalid = [event_body(domain=f"d{n}") for n in range(9_999)] + [event_body(value="x")]
    for _ in range(8):
        response = outcomes_a.post(BULK, {"events": invalid}, format="json")
        assert response.status_code == 400
        assert "events.9999.value" in response.json()["errors"]
    not_json_events = outcomes_a.post(BULK, {"events": "all of them"}, format="json")
    assert not_json_events.status_code == 400
    bad_report = outcomes_a.post("/v1/outcomes/ctrf", {"results": {}}, format="json")
    assert bad_report.status_code == 400
    assert outcomes_a.post("/v1/outcomes/events", event_body(value=None),
                           format="json").status_code == 400

    assert outcomes_a.post("/v1/outcomes/events", event_body(), format="json").status_code == 201
    assert bulk(outcomes_a, 10_000).status_code == 201
    # Only what was stored is charged: the minute has 49,999 events left.
    minute = counters.window(f"events:{tenant_a.pk}", limit=60_000, seconds=60)
    assert counters.used(minute) == 10_001
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == 10_001


@pytest.mark.django_db(transaction=True)  # the failed bulk's own transaction rolls back
def test_a_bulk_that_fails_to_store_gives_its_charge_back(allowance, outcomes_a, tenant_a,
                                                          monkeypatch):
    from outcomes import services

    original = services._counts_add
    monkeypatch.setattr(services, "_counts_add", lambda tenant, counts: 1 / 0)
    outcomes_a.raise_request_exception = False
    assert bulk(outcomes_a, 10_000).status_code == 500  # valid, charged, then not stored
    monkeypatch.setattr(services, "_counts_add", original)
    # The allowance is 20,000: both fit only if the failed bulk's charge was given back.
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == 20_000


def test_once_over_the_allowance_a_request_is_refused_before_its_body_is_read(
    allowance, outcomes_a
):
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert bulk(outcomes_a, 10_000).status_code == 201
    for path in (BULK, "/v1/outcomes/events", "/v1/outcomes/ctrf"):
        # Not even JSON: the answer is the 429, not a parse error.
        response = outcomes_a.post(path, data=b"{not json", content_type="application/json")
        assert response.status_code == 429, (path, response.content)


def test_ctrf_reports_count_their_events(allowance, outcomes_a):
    tests = [{"name": f"t{n}", "status": "passed", "duration": 5} for n in range(5_000)]
    report = {"results": {"tool": {"name": "pytest"},
                          "summary": {"tests": 5_000, "passed": 5_000, "failed": 0,
                                      "skipped": 0, "pending": 0, "other": 0,
                                      "start": 1_764_000_000_000, "stop": 1_764_000_100_000},
                          "tests": tests}}
    assert bulk(outcomes_a, 10_000).status_code == 201
    assert outcomes_a.post("/v1/outcomes/ctrf", report, format="json").status_code == 201
    refused = outcomes_a.post("/v1/outcomes/ctrf", report, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "event_rate_exceeded"


def test_events_the_service_records_itself_do_not_count(allowance, tenant_a):
    from outcomes.services import event_record_bulk

    event_record_bulk(tenant=tenant_a, events=[event_body()] * 10_000)
    event_record_bulk(tenant=tenant_a, events=[event_body()] * 10_000)
    event_record_bulk(tenant=tenant_a, events=[event_body()] * 10_000)
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == 30_000


def test_an_allowance_below_the_largest_bulk_fails_the_start_up_check(settings):
    from outcomes.limits import check_events_per_minute

    settings.AGENT33_EVENTS_PER_MINUTE = 5_000
    [error] = check_events_per_minute()
    assert error.id == "outcomes.E001"
    settings.AGENT33_EVENTS_PER_MINUTE = 0
    assert check_events_per_minute() == []
