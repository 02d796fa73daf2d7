"""A tenant's outcome events per minute through the API (outcomes/limits.py): one tenant
sending bulks in a loop cannot take the machine from the others."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from outcomes.models import OutcomeEvent
from tests.outcomes.conftest import event_body

pytestmark = pytest.mark.django_db

BULK = "/v1/outcomes/events/bulk"


@pytest.fixture
def allowance(settings, monkeypatch):
    """20,000 events a minute, and a clock held 30 s into one minute, so a test never
    straddles two windows."""
    from types import SimpleNamespace

    from outcomes import limits

    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: 1_800_000_030.0))
    cache.clear()
    settings.AGENT33_EVENTS_PER_MINUTE = 20_000
    yield
    cache.clear()


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
