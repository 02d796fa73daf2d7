import threading

import pytest
from django.db import connection

from agent33.tenancy.models import IdempotencyRecord
from tests.conftest import make_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_side_effects_yet():
    from tests.tenancy.error_urls import CREATED

    CREATED.clear()


def post(client, body, key="key-1", path="/v1/test/create"):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.urls("tests.tenancy.error_urls")
def test_same_key_and_body_replays_the_first_response(client_a):
    first = post(client_a, {"n": 1})
    assert first.status_code == 201
    again = post(client_a, {"n": 1})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    from tests.tenancy.error_urls import CREATED

    assert len(CREATED) == 1


@pytest.mark.urls("tests.tenancy.error_urls")
def test_same_key_with_another_body_is_422(client_a):
    post(client_a, {"n": 1})
    response = post(client_a, {"n": 2})
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


@pytest.mark.urls("tests.tenancy.error_urls")
def test_keys_are_per_tenant(client_a, client_b):
    assert post(client_a, {"n": 1}).json()["tenant"] == "tenant-a"
    response = post(client_b, {"n": 1})
    assert response.json()["tenant"] == "tenant-b"
    assert "Idempotent-Replayed" not in response


@pytest.mark.urls("tests.tenancy.error_urls")
def test_a_request_in_flight_with_the_key_is_409(client_a):
    IdempotencyRecord.objects.create(owner="tenant-a", key="busy", fingerprint="x" * 64)
    response = post(client_a, {"n": 1}, key="busy")
    assert response.status_code in (409, 422)
    IdempotencyRecord.objects.filter(key="busy").update(fingerprint=_fingerprint_of(client_a))
    response = post(client_a, {"n": 1}, key="busy")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_flight"


def _fingerprint_of(client_a):
    from django.test import RequestFactory

    from agent33.api.idempotency import _fingerprint

    request = RequestFactory().post("/v1/test/create", b'{"n":1}', content_type="application/json")
    return _fingerprint(request)


@pytest.mark.urls("tests.tenancy.error_urls")
def test_failed_requests_are_not_remembered(client_a, anonymous_client):
    response = post(anonymous_client, {"n": 1})
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()
    response = post(client_a, {"invalid": True})
    assert response.status_code == 400
    assert post(client_a, {"invalid": True}).status_code == 400


@pytest.mark.urls("tests.tenancy.error_urls")
def test_overlong_key_is_400(client_a):
    response = post(client_a, {"n": 1}, key="k" * 300)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


@pytest.mark.urls("tests.tenancy.error_urls")
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_requests_have_one_side_effect(require_postgres, client_a):
    from tests.tenancy.error_urls import CREATED

    token = client_a.plaintext
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def send():
        client = make_client(token)
        barrier.wait()
        try:
            statuses.append(post(client, {"n": 7}, key="concurrent").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(CREATED) == 1
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}


def test_a_malformed_multipart_body_is_a_json_400_naming_it(api_client_for, tenant_a):
    """Found by `make fuzz` (seed 2104155600): the middleware reads a multipart body to
    fingerprint it, and Django's own parser refused this one with its HTML 400 page."""
    from tests.factories.operations import AutonomyBudgetFactory

    client = api_client_for(tenant_a, scopes=["workflows:write"])
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="draft")
    boundary = "d13a8ecb3b1ce8a974503394e44eabf0"
    # A part with no blank line after it: all of it is read as headers, over the parser's
    # 1 KB limit for them.
    body = f"--{boundary}\r\n[{'True, None, ' * 120}]--{boundary}--\r\n".encode()
    response = client.generic(
        "POST",
        f"/v1/operations/budgets/{budget.pk}/transition",
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_IDEMPOTENCY_KEY="fuzz-1",
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Multipart form parse error - Request max total header size exceeded.",
        "code": "parse_error",
    }
    assert not IdempotencyRecord.objects.exists()
    budget.refresh_from_db()
    assert budget.status == "draft"
