"""The events allowance through real processes (issue 23, issue 24): two gunicorn workers on
PostgreSQL, with the counts in Redis and without Redis (in the database). Refused bulks
charge nothing, senders whose events together fit are never refused, and the workers
together never grant more than the allowance."""

from __future__ import annotations

import threading

import httpx
import pytest

from agent33.tenancy.services import token_issue
from outcomes.models import OutcomeEvent
from tests.outcomes.conftest import event_body
from tests.workers import gunicorn_server, wait_for_fresh_window

BULK = "/v1/outcomes/events/bulk"
ALLOWANCE = 20_000


def events(count: int, *, invalid: bool = False) -> dict:
    body = [event_body(domain=f"d{n % 50}") for n in range(count)]
    if invalid:
        body[-1] = event_body(metric_type="not-a-metric")
    return {"events": body}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_within_the_allowance_are_never_refused(require_postgres,
                                                                    tenant_a, counts_env):
    token = token_issue(tenant=tenant_a, scopes=["outcomes:write"]).plaintext
    headers = {"Authorization": f"Bearer {token}"}
    valid, invalid = events(4_000), events(10_000, invalid=True)
    with gunicorn_server(workers=2, AGENT33_EVENTS_PER_MINUTE=str(ALLOWANCE), **counts_env) as url:
        wait_for_fresh_window(needed=40)
        # Four senders of 4,000 valid events (16,000 together, within the 20,000) at the
        # same time as four senders of 10,000 events whose last one is invalid.
        bodies = [valid] * 4 + [invalid] * 4
        barrier = threading.Barrier(len(bodies))
        answers: dict[int, int] = {}

        def send(index: int) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                barrier.wait()
                answers[index] = client.post(BULK, json=bodies[index]).status_code

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [answers[i] for i in range(len(bodies))] == [201] * 4 + [400] * 4

        # Both workers count in one place: 16,000 used, 4,000 left, whichever answers.
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            over = client.post(BULK, json=events(5_000))
            assert over.status_code == 429, over.text
            assert over.json()["code"] == "event_rate_exceeded"
            assert client.post(BULK, json=events(4_000)).status_code == 201
            for _ in range(2):  # a fresh connection each, to reach either worker
                refused = httpx.post(f"{url}{BULK}", json=events(1), headers=headers,
                                     timeout=60)
                assert refused.status_code == 429, refused.text
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == ALLOWANCE
