"""The webhooks API as a tenant uses it: endpoints (secret shown once, at most 20, URL and
event-type rules), rotation, the delivery log with attempts, and replay."""

from __future__ import annotations

import json

import pytest

from agent33.tenancy.context import tenant_scope
from webhooks import delivery as deliver
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

BASE = "/v1/webhooks"


@pytest.fixture
def writer(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["webhooks:read", "webhooks:write"])


def drain_endpoint(endpoint_id, tenant):
    with tenant_scope(tenant):
        deliver.drain_endpoint(endpoint_id)


def emit(tenant, data=None):
    with tenant_scope(tenant):
        return services.alert_emit(tenant_id=tenant.pk, event_type="intake.opened",
                                   data=data or {})


def _create(client, url, event_types=("intake.opened",), **extra):
    return client.post(f"{BASE}/endpoints", {"url": url, "event_types": list(event_types),
                                              **extra}, format="json")


def test_create_shows_the_secret_once_and_stores_it_encrypted(writer, receiver):
    response = _create(writer, receiver.url, description="on-call")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["enabled"] is True
    assert body["event_types"] == ["intake.opened"]
    stored = WebhookEndpoint.all_tenants.get(pk=body["id"])
    assert body["secret"] not in stored.secret_encrypted
    assert body["secret"].removeprefix("whsec_") not in stored.secret_encrypted

    one = writer.get(f"{BASE}/endpoints/{body['id']}")
    assert one.status_code == 200
    assert "secret" not in one.json()
    listed = writer.get(f"{BASE}/endpoints")
    assert [e["id"] for e in listed.json()] == [body["id"]]
    assert "secret" not in listed.json()[0]
    assert body["secret"] not in listed.content.decode()


def test_unknown_event_type_is_400_naming_event_types(writer, receiver):
    response = _create(writer, receiver.url, event_types=["intake.opened", "pizza.arrived"])
    assert response.status_code == 400
    body = response.json()
    assert "event_types" in body["errors"]
    assert "pizza.arrived" in body["detail"]
    assert _create(writer, receiver.url, event_types=[]).status_code == 400
    assert WebhookEndpoint.all_tenants.count() == 0


@pytest.mark.parametrize("url", [
    "http://127.0.0.2/hook",  # loopback, outside the allowed 127.0.0.1/32
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://0.0.0.0:9/hook",
])
def test_private_hosts_are_url_not_allowed(writer, url):
    response = _create(writer, url)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "url_not_allowed"
    assert "url" in response.json()["errors"]


def test_loopback_is_refused_unless_the_outbound_setting_allows_it(writer, settings):
    settings.AGENT33_OUTBOUND_PRIVATE_NETWORKS = ""
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = ""
    refused = _create(writer, "http://127.0.0.1:9/hook")
    assert refused.status_code == 400
    assert refused.json()["code"] == "url_not_allowed"
    assert "AGENT33_OUTBOUND_PRIVATE_NETWORKS" in refused.json()["detail"]
    # The old setting name is still read.
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = "127.0.0.1/32"
    assert _create(writer, "http://127.0.0.1:9/hook").status_code == 201


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://user:pw@example.com/",
                                 "not a url", "http://", "http://example.com/#frag"])
def test_malformed_urls_are_400_naming_url(writer, url):
    response = _create(writer, url)
    assert response.status_code == 400
    assert "url" in response.json()["errors"]


def test_at_most_20_endpoints_per_tenant(writer, client_b, receiver):
    for _ in range(20):
        assert _create(writer, receiver.url).status_code == 201
    refused = _create(writer, receiver.url)
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_endpoints"
    assert "20" in refused.json()["detail"]
    # Another tenant's limit is its own.
    assert _create(client_b, receiver.url).status_code == 201


def test_patch_changes_fields_and_enables_or_disables(writer, receiver):
    created = _create(writer, receiver.url).json()
    response = writer.patch(f"{BASE}/endpoints/{created['id']}", {
        "event_types": ["batch.completed", "spend.threshold_crossed"],
        "description": "ops", "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["event_types"] == ["spend.threshold_crossed", "batch.completed"]
    assert body["description"] == "ops"
    assert body["enabled"] is False
    assert body["disabled_reason"] == "by_user"
    again = writer.patch(f"{BASE}/endpoints/{created['id']}", {"enabled": True}, format="json")
    assert again.json()["enabled"] is True and again.json()["disabled_reason"] == ""
    bad = writer.patch(f"{BASE}/endpoints/{created['id']}", {"url": "http://10.0.0.1/"},
                       format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "url_not_allowed"
    bad = writer.patch(f"{BASE}/endpoints/{created['id']}", {"event_types": ["nope"]},
                       format="json")
    assert bad.status_code == 400 and "event_types" in bad.json()["errors"]


def test_a_form_patch_that_leaves_enabled_out_changes_nothing(writer, receiver):
    """Found by fuzzing: a multipart PATCH without `enabled` read it as false (a form's
    unchecked box) and disabled the endpoint."""
    created = _create(writer, receiver.url).json()
    response = writer.generic("PATCH", f"{BASE}/endpoints/{created['id']}", b"--xx--\r\n",
                              content_type="multipart/form-data; boundary=xx")
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is True
    assert response.json()["disabled_reason"] == ""


def test_a_patch_of_an_endpoint_deleted_meanwhile_is_404(writer, receiver, monkeypatch):
    """Found by fuzzing: a DELETE committed between the PATCH's read and its update made
    the update's reload a 500."""
    from webhooks import services
    from webhooks.models import WebhookEndpoint

    created = _create(writer, receiver.url).json()
    real_update = services.endpoint_update

    def deleted_first(*, endpoint, **changes):
        WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
        return real_update(endpoint=endpoint, **changes)

    monkeypatch.setattr(services, "endpoint_update", deleted_first)
    response = writer.patch(f"{BASE}/endpoints/{created['id']}", {"description": "x"},
                            format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_delete_removes_the_endpoint_and_its_log(writer, receiver, tenant_a):
    created = _create(writer, receiver.url).json()
    emit(tenant_a, {"x": 1})
    assert writer.delete(f"{BASE}/endpoints/{created['id']}").status_code == 204
    assert writer.get(f"{BASE}/endpoints/{created['id']}").status_code == 404
    assert WebhookDelivery.all_tenants.count() == 0


def test_rotate_secret_returns_a_new_secret_once(writer, receiver):
    created = _create(writer, receiver.url).json()
    rotated = writer.post(f"{BASE}/endpoints/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"] is not None


def test_deliveries_log_lists_attempts_and_replay_sends_again(writer, receiver, tenant_a):
    created = _create(writer, receiver.url).json()
    [delivery_id] = emit(tenant_a, {"intake_id": "intake-1", "title": "t"})
    drain_endpoint(created["id"], tenant_a)
    log = writer.get(f"{BASE}/endpoints/{created['id']}/deliveries")
    assert log.status_code == 200
    [entry] = log.json()
    assert entry["id"] == delivery_id
    assert entry["state"] == "delivered"
    assert entry["message_id"].startswith("msg_")
    assert entry["payload"]["type"] == "intake.opened"
    assert entry["payload"]["data"]["intake_id"] == "intake-1"
    [attempt] = entry["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] == ""
    assert attempt["duration_ms"] >= 0

    in_flight = writer.post(f"{BASE}/deliveries/{delivery_id}/replay")
    assert in_flight.status_code == 202, in_flight.content
    replay = in_flight.json()
    assert replay["replay_of"] == delivery_id and replay["state"] == "pending"
    assert replay["message_id"] == entry["message_id"]
    # Replaying it again while it waits is a conflict.
    assert writer.post(f"{BASE}/deliveries/{replay['id']}/replay").status_code == 409
    drain_endpoint(created["id"], tenant_a)
    received = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in received] == [entry["message_id"]] * 2
    assert received[0].body == received[1].body
    assert len(writer.get(f"{BASE}/endpoints/{created['id']}/deliveries").json()) == 2


def test_replay_of_a_disabled_endpoints_delivery_is_409(writer, receiver, tenant_a):
    created = _create(writer, receiver.url).json()
    [delivery_id] = emit(tenant_a, {})
    drain_endpoint(created["id"], tenant_a)
    writer.patch(f"{BASE}/endpoints/{created['id']}", {"enabled": False}, format="json")
    response = writer.post(f"{BASE}/deliveries/{delivery_id}/replay")
    assert response.status_code == 409
    assert response.json()["code"] == "endpoint_disabled"


def test_another_tenant_sees_and_touches_nothing(writer, client_b, receiver, tenant_a):
    created = _create(writer, receiver.url).json()
    [delivery_id] = emit(tenant_a, {})
    drain_endpoint(created["id"], tenant_a)
    assert client_b.get(f"{BASE}/endpoints").json() == []
    for method, path in [("get", f"endpoints/{created['id']}"),
                         ("patch", f"endpoints/{created['id']}"),
                         ("delete", f"endpoints/{created['id']}"),
                         ("post", f"endpoints/{created['id']}/rotate-secret"),
                         ("get", f"endpoints/{created['id']}/deliveries"),
                         ("post", f"deliveries/{delivery_id}/replay")]:
        response = getattr(client_b, method)(f"{BASE}/{path}", {}, format="json")
        assert response.status_code == 404, (method, path)
    assert WebhookEndpoint.all_tenants.get(pk=created["id"]).enabled
    assert WebhookDelivery.all_tenants.count() == 1


def test_scopes_are_required(api_client_for, tenant_a, receiver):
    reader = api_client_for(tenant_a, scopes=["webhooks:read"])
    assert reader.get(f"{BASE}/endpoints").status_code == 200
    assert _create(reader, receiver.url).status_code == 403
    nobody = api_client_for(tenant_a, scopes=["workflows:read"])
    assert nobody.get(f"{BASE}/endpoints").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_pass_20(require_postgres, tenant_a, api_client_for):
    """Eight clients create at once when 17 exist: exactly three succeed (the count is read
    under the tenant's row lock)."""
    import threading

    from django.db import connections

    from tests.conftest import make_client

    token = api_client_for(tenant_a, scopes=["webhooks:write"]).plaintext
    for _ in range(17):
        assert _create(make_client(token), "http://127.0.0.1:9/hook").status_code == 201
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def create():
        try:
            client = make_client(token)
            barrier.wait(timeout=10)
            statuses.append(_create(client, "http://127.0.0.1:9/hook").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] * 3 + [409] * 5
    assert WebhookEndpoint.all_tenants.filter(tenant=tenant_a).count() == 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_settlements_cross_a_threshold_once(require_postgres, tenant_a, receiver):
    """Eight settlements that each pass 50 % at once send one alert (the unique row)."""
    import threading

    from django.db import connections, transaction
    from django.utils import timezone

    from agent33.tenancy.context import tenant_scope
    from multimodal.models import MultimodalPolicy
    from multimodal.services.spend import spend_settle

    with tenant_scope(tenant_a):
        services.endpoint_create(tenant=tenant_a, url=receiver.url,
                                 event_types=["spend.threshold_crossed"])
    MultimodalPolicy.all_tenants.create(tenant=tenant_a, daily_spend_limit_usd="10")
    day = timezone.now().date()
    with tenant_scope(tenant_a):
        spend_settle(tenant_id=tenant_a.pk, day=day, release_nanos=0, cost_nanos=4_900_000_000)
    barrier = threading.Barrier(8)

    def settle():
        try:
            barrier.wait(timeout=10)
            with tenant_scope(tenant_a), transaction.atomic():
                spend_settle(tenant_id=tenant_a.pk, day=day, release_nanos=0,
                             cost_nanos=200_000_000)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=settle) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    alerts = WebhookDelivery.all_tenants.filter(tenant=tenant_a,
                                                event_type="spend.threshold_crossed")
    assert [json.loads(a.body)["data"]["threshold_pct"] for a in alerts] == [50]


def test_an_idempotent_replay_never_shows_or_stores_the_secret(writer, receiver):
    from agent33.tenancy.models import IdempotencyRecord

    first = writer.post(f"{BASE}/endpoints", {"url": receiver.url,
                                               "event_types": ["intake.opened"]},
                        format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    again = writer.post(f"{BASE}/endpoints", {"url": receiver.url,
                                               "event_types": ["intake.opened"]},
                        format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"].startswith("whsec_")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["secret"] is None
    stored = b"".join(bytes(r.response_body) for r in IdempotencyRecord.objects.all())
    assert first.json()["secret"].encode() not in stored
    assert WebhookEndpoint.all_tenants.count() == 1
