"""Staff pages of webhooks: endpoints and deliveries (with every attempt inline), limited to
the staff member's tenants, and the Replay and Enable/Disable actions through the API's
services."""

from __future__ import annotations

import pytest

from tests.conftest import STAFF_PASSWORD
from tests.factories.webhooks import WebhookAttemptFactory, WebhookEndpointFactory
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(staff_user_factory, tenant_a, client):
    staff_user_factory("alice", tenants=[tenant_a])
    client.login(username="alice", password=STAFF_PASSWORD)
    return client


def test_staff_see_deliveries_with_attempts_of_their_tenants_only(alice, tenant_a, tenant_b):
    mine = WebhookAttemptFactory(tenant=tenant_a, status_code=503, error="HTTP 503")
    theirs = WebhookAttemptFactory(tenant=tenant_b)
    listing = alice.get("/admin/webhooks/webhookdelivery/")
    assert listing.status_code == 200
    assert mine.delivery_id in listing.content.decode()
    assert theirs.delivery_id not in listing.content.decode()
    page = alice.get(f"/admin/webhooks/webhookdelivery/{mine.delivery_id}/change/")
    assert page.status_code == 200
    assert "HTTP 503" in page.content.decode()  # the attempt, inline
    assert alice.get(f"/admin/webhooks/webhookdelivery/{theirs.delivery_id}/change/"
                     ).status_code in (302, 404)
    endpoints = alice.get("/admin/webhooks/webhookendpoint/")
    assert mine.delivery.endpoint_id in endpoints.content.decode()
    assert theirs.delivery.endpoint_id not in endpoints.content.decode()


def test_replay_action_queues_a_new_delivery(alice, tenant_a):
    attempt = WebhookAttemptFactory(tenant=tenant_a)
    response = alice.post("/admin/webhooks/webhookdelivery/", {
        "action": "replay_deliveries", "_selected_action": [attempt.delivery_id]})
    assert response.status_code == 302
    replay = WebhookDelivery.all_tenants.get(replay_of_id=attempt.delivery_id)
    assert replay.state == "pending"
    assert replay.message_id == attempt.delivery.message_id


def test_disable_action_uses_the_service(alice, tenant_a):
    endpoint = WebhookEndpointFactory(tenant=tenant_a)
    response = alice.post("/admin/webhooks/webhookendpoint/", {
        "action": "disable_endpoints", "_selected_action": [endpoint.pk]})
    assert response.status_code == 302
    endpoint = WebhookEndpoint.all_tenants.get(pk=endpoint.pk)
    assert not endpoint.enabled and endpoint.disabled_reason == "by_user"


def test_endpoints_the_system_disabled_need_attention_on_the_hub(alice, tenant_a, tenant_b):
    gone = WebhookEndpointFactory(tenant=tenant_a, enabled=False, disabled_reason="gone")
    WebhookEndpointFactory(tenant=tenant_a, enabled=False, disabled_reason="by_user")
    WebhookEndpointFactory(tenant=tenant_a)
    WebhookEndpointFactory(tenant=tenant_b, enabled=False, disabled_reason="failing")
    panels = alice.get("/admin/operations/hub/", {"format": "json", "panels": "1"}).json()
    html = panels["panels"]["attention"]
    assert 'id="attention-webhooks-disabled" data-count="1"' in html
    href = html.split('id="attention-webhooks-disabled"')[1].split('href="')[1]
    href = href.split('"')[0].replace("&amp;", "&")
    listed = alice.get(href)
    assert listed.status_code == 200
    assert [e.pk for e in listed.context["cl"].result_list] == [gone.pk]
