"""Throttles are shared by every process of the deployment, with Redis and without it
(issue 24): two gunicorn workers never let a token through more than its rate."""

import httpx
import pytest

from agent33.tenancy.services import token_issue
from tests.workers import gunicorn_server, wait_for_fresh_window


def hammer(url: str, token: str, count: int) -> list[httpx.Response]:
    # A new connection per request, so the kernel spreads them over both workers.
    headers = {"Authorization": f"Bearer {token}"}
    return [httpx.get(f"{url}/v1/auth/whoami", headers=headers, timeout=10) for _ in range(count)]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_throttle_counts_are_shared_by_two_gunicorn_workers(require_postgres, tenant_a,
                                                            counts_env):
    token = token_issue(tenant=tenant_a, scopes=["admin"]).plaintext
    with gunicorn_server(workers=2, AGENT33_THROTTLE_RATE="12/min", **counts_env) as url:
        wait_for_fresh_window(needed=15)
        responses = hammer(url, token, 20)
    statuses = [r.status_code for r in responses]
    assert statuses[:12] == [200] * 12
    assert set(statuses[12:]) == {429}
    for response in responses[12:]:
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert response.json()["code"] == "throttled"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_leased_counts_never_let_two_workers_pass_the_rate(require_postgres, tenant_a,
                                                           counts_env):
    """At 300 a minute a worker counting in the database takes 3 requests at a time from the
    shared count: together the workers stay within the rate, at most a lease short of it
    per worker."""
    token = token_issue(tenant=tenant_a, scopes=["admin"]).plaintext
    with gunicorn_server(workers=2, AGENT33_THROTTLE_RATE="300/min", **counts_env) as url:
        wait_for_fresh_window(needed=30)
        statuses = [r.status_code for r in hammer(url, token, 330)]
    passed = statuses.count(200)
    assert 300 - 2 * 2 <= passed <= 300, passed
    assert statuses.count(429) == 330 - passed
    if counts_env:  # Redis counts every request
        assert passed == 300
