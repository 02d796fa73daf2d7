import httpx
import pytest
import redis

from agent33.tenancy.services import token_issue
from tests.workers import gunicorn_server

CACHE = "redis://127.0.0.1:6379/13"


def hammer(url: str, token: str, count: int) -> list[httpx.Response]:
    # A new connection per request, so the kernel spreads them over both workers.
    headers = {"Authorization": f"Bearer {token}"}
    return [httpx.get(f"{url}/v1/auth/whoami", headers=headers, timeout=10) for _ in range(count)]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_throttle_counts_are_shared_by_two_gunicorn_workers(
    require_postgres, require_redis, tenant_a
):
    redis.Redis.from_url(CACHE).flushdb()
    token = token_issue(tenant=tenant_a, scopes=["admin"]).plaintext
    with gunicorn_server(workers=2, REDIS_URL=CACHE, AGENT33_THROTTLE_RATE="12/min") as url:
        responses = hammer(url, token, 20)
    statuses = [r.status_code for r in responses]
    assert statuses[:12] == [200] * 12
    assert set(statuses[12:]) == {429}
    for response in responses[12:]:
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["code"] == "throttled"

    # The control: with per-process memory instead of Redis, each worker counts on its own
    # and lets more than the limit through — which is what the shared cache prevents.
    token = token_issue(tenant=tenant_a, scopes=["admin"]).plaintext
    with gunicorn_server(workers=2, AGENT33_THROTTLE_RATE="12/min") as url:
        statuses = [r.status_code for r in hammer(url, token, 40)]
    assert statuses.count(200) > 12
