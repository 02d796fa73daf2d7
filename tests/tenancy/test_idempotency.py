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
def test_keys_are_per_token_within_a_tenant(api_client_for, tenant_a):
    from tests.tenancy.error_urls import CREATED

    first, second = api_client_for(tenant_a), api_client_for(tenant_a)
    assert post(first, {"n": 1}).json()["seq"] == 1
    response = post(second, {"n": 1})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert response.json()["seq"] == 2  # its own request ran
    assert len(CREATED) == 2
    assert post(first, {"n": 1})["Idempotent-Replayed"] == "true"


def test_a_read_only_token_cannot_replay_another_tokens_policy_write(api_client_for, tenant_a):
    """The finding: with tenant-wide keys and the replay in front of DRF, a read-only token
    got the stored 200 of an admin's policy write."""
    admin = api_client_for(tenant_a, scopes=["multimodal:admin"])
    reader = api_client_for(tenant_a, scopes=["multimodal:read"])
    path = f"/v1/multimodal/tenants/{tenant_a.slug}/policy"
    body = {"max_text_chars": 10}
    written = admin.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="policy-1")
    assert written.status_code == 200
    response = reader.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="policy-1")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Missing required scope: multimodal:admin", "code": "missing_scope"
    }
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.count() == 1
    # The writer still gets its replay.
    again = admin.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="policy-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == written.json()


@pytest.mark.urls("tests.tenancy.error_urls")
def test_a_revoked_token_gets_its_own_401_not_the_replay(client_a):
    from agent33.tenancy.services import token_revoke

    assert post(client_a, {"n": 1}).status_code == 201
    token_revoke(token=client_a.token)
    response = post(client_a, {"n": 1})
    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response


@pytest.mark.urls("tests.tenancy.error_urls")
def test_a_replay_is_throttled_like_a_fresh_request(client_a, monkeypatch):
    from django.core.cache import cache

    from agent33.auth.throttling import TokenRateThrottle

    cache.clear()
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "1/min"})
    try:
        assert post(client_a, {"n": 1}).status_code == 201
        response = post(client_a, {"n": 1})
        assert response.status_code == 429
        assert "Idempotent-Replayed" not in response
    finally:
        cache.clear()


def test_every_post_route_replays_only_after_authentication_and_scopes():
    """The replay lives in the shared DRF bases; a POST view outside them would answer
    Idempotency-Key retries without replaying (or, before, with a replay before DRF)."""
    from agent33.api.idempotency import IdempotentMixin
    from tests.test_route_isolation import API_ROUTES

    outside = [f"POST {route.key} ({route.view_name})" for route in API_ROUTES
               if "POST" in route.methods and not issubclass(route.view_class, IdempotentMixin)]
    assert outside == []


def test_records_past_the_replay_window_are_purged(client_a):
    from datetime import timedelta

    from django.utils import timezone

    from agent33.tasks import purge_idempotency_records

    old = IdempotencyRecord.objects.create(
        token=client_a.token, key="old", fingerprint="x" * 64,
        created_at=timezone.now() - timedelta(hours=25),
    )
    fresh = IdempotencyRecord.objects.create(token=client_a.token, key="new", fingerprint="x")
    assert purge_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not IdempotencyRecord.objects.filter(pk=old.pk).exists()


@pytest.mark.urls("tests.tenancy.error_urls")
def test_a_request_in_flight_with_the_key_is_409(client_a):
    IdempotencyRecord.objects.create(token=client_a.token, key="busy", fingerprint="x" * 64)
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


def test_an_in_flight_key_guards_its_request_as_long_as_its_work_can_run(settings):
    """Issue 24: a key counted as abandoned after 5 minutes while a multimodal request may
    run for an hour. The guard is the policy ceiling on a request's timeout plus the
    reaper's grace, read from both."""
    from datetime import timedelta

    from agent33.api.idempotency import in_flight_guard
    from multimodal.models import POLICY_LIMITS

    assert POLICY_LIMITS["max_timeout_seconds"] == 3600
    settings.MULTIMODAL_REAPER_GRACE_SECONDS = 30
    assert in_flight_guard() == timedelta(seconds=3630)
    settings.MULTIMODAL_REAPER_GRACE_SECONDS = 90
    assert in_flight_guard() == timedelta(seconds=3690)


@pytest.mark.urls("tests.tenancy.error_urls")
@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_work_runs_is_409_never_a_second_execution(client_a, monkeypatch):
    """A request whose work is still running: a retry at any time up to the guard (here the
    clock is moved to one second before it) gets 409; once the work answers, retries replay."""
    from datetime import timedelta
    from types import SimpleNamespace

    from django.utils import timezone

    from agent33.api import idempotency
    from tests.tenancy.error_urls import CREATED, RELEASE, RUNNING

    RUNNING.clear()
    RELEASE.clear()
    token = client_a.plaintext
    first: list = []

    def send_first():
        try:
            first.append(post(make_client(token), {"n": 1}, key="long", path="/v1/test/slow"))
        finally:
            connection.close()

    worker = threading.Thread(target=send_first)
    worker.start()
    try:
        assert RUNNING.wait(10)
        later = timezone.now() + idempotency.in_flight_guard() - timedelta(seconds=1)
        monkeypatch.setattr(idempotency, "timezone", SimpleNamespace(now=lambda: later))
        retry = post(client_a, {"n": 1}, key="long", path="/v1/test/slow")
        assert retry.status_code == 409
        assert retry.json()["code"] == "idempotency_key_in_flight"
        assert CREATED == []
    finally:
        RELEASE.set()
        worker.join(10)
    monkeypatch.undo()
    assert first[0].status_code == 201
    replayed = post(client_a, {"n": 1}, key="long", path="/v1/test/slow")
    assert replayed["Idempotent-Replayed"] == "true"
    assert CREATED == [{"n": 1}]


@pytest.mark.urls("tests.tenancy.error_urls")
def test_a_key_in_flight_past_the_guard_was_abandoned_and_runs_again(client_a):
    """Its process died without answering, and the longest work it could run is over."""
    from datetime import timedelta

    from django.utils import timezone

    from agent33.api.idempotency import in_flight_guard
    from tests.tenancy.error_urls import CREATED

    started = timezone.now() - in_flight_guard() - timedelta(seconds=1)
    IdempotencyRecord.objects.create(token=client_a.token, key="dead",
                                     fingerprint=_fingerprint_of(client_a), created_at=started)
    response = post(client_a, {"n": 1}, key="dead")
    assert response.status_code == 201
    assert len(CREATED) == 1
