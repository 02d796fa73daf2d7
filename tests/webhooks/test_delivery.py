"""Delivery as a receiver sees it: Standard Webhooks headers verified by the
`standardwebhooks` library (never our own verifier), retries on the schedule, Retry-After,
410, redirects not followed, rotation, the outbound rules at every try, and the 5-day rule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from agent33.tenancy.context import tenant_scope
from bench.receivers import Receiver
from operations.hub import attention_items
from webhooks import delivery as deliver
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _in_tenant_a_scope(tenant_a):
    """Delivery code runs in its tenant's scope (the drain job's); these tests call it
    directly for tenant A."""
    with tenant_scope(tenant_a):
        yield


def _emit(tenant, event_type="intake.opened", data=None):
    return services.alert_emit(tenant_id=tenant.pk, event_type=event_type,
                               data=data or {"intake_id": "intake-x", "title": "t"})


def _make_due(delivery_id):
    WebhookDelivery.all_tenants.filter(pk=delivery_id).update(next_attempt_at=timezone.now())


def test_a_receiver_verifies_the_signature_with_standardwebhooks(tenant_a, receiver,
                                                                 endpoint_for):
    endpoint, secret = endpoint_for(tenant_a, receiver.url)
    [delivery_id] = _emit(tenant_a)
    deliver.drain_endpoint(endpoint.pk)
    [got] = receiver.wait_for(1)
    assert got.headers["content-type"] == "application/json"
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "intake.opened"
    assert payload["data"]["intake_id"] == "intake-x"
    assert payload["timestamp"].endswith("Z")
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(services.endpoint_rotate_secret(endpoint=endpoint)[1]).verify(
            got.body + b" ", got.headers)
    assert WebhookDelivery.all_tenants.get(pk=delivery_id).state == "delivered"


def test_failures_retry_on_the_schedule_with_the_same_webhook_id(tenant_a, endpoint_for,
                                                                 settings):
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "0,0"
    with Receiver(lambda n: (500, {}) if n < 2 else (200, {})) as failing:
        endpoint, secret = endpoint_for(tenant_a, failing.url)
        [delivery_id] = _emit(tenant_a)
        for _ in range(3):
            deliver.drain_endpoint(endpoint.pk)
        received = failing.wait_for(3)
    assert len(received) == 3
    assert len({r.headers["webhook-id"] for r in received}) == 1
    for got in received:
        Webhook(secret).verify(got.body, got.headers)
    row = WebhookDelivery.all_tenants.get(pk=delivery_id)
    assert row.state == "delivered" and row.attempt_count == 3
    assert list(WebhookAttempt.all_tenants.filter(delivery_id=delivery_id)
                .values_list("status_code", flat=True)) == [500, 500, 200]
    # Success clears the endpoint's failure clock.
    assert WebhookEndpoint.all_tenants.get(pk=endpoint.pk).failing_since is None


def test_after_the_last_try_the_delivery_fails(tenant_a, endpoint_for, settings):
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "0"
    with Receiver(lambda n: (503, {})) as down:
        endpoint, _ = endpoint_for(tenant_a, down.url)
        [delivery_id] = _emit(tenant_a)
        for _ in range(4):
            deliver.drain_endpoint(endpoint.pk)
        assert len(down.received) == 2
    row = WebhookDelivery.all_tenants.get(pk=delivery_id)
    assert row.state == "failed" and row.last_status_code == 503
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None and endpoint.enabled


def test_the_default_schedule_waits_about_5_seconds_then_5_minutes(tenant_a, endpoint_for):
    with Receiver(lambda n: (500, {})) as down:
        endpoint, _ = endpoint_for(tenant_a, down.url)
        [delivery_id] = _emit(tenant_a)
        before = timezone.now()
        deliver.drain_endpoint(endpoint.pk)
        first = WebhookDelivery.all_tenants.get(pk=delivery_id).next_attempt_at - before
        assert timedelta(seconds=3.9) <= first <= timedelta(seconds=7)  # 5 s ± 20 % jitter
        deliver.drain_endpoint(endpoint.pk)  # not due yet: nothing sent
        assert len(down.received) == 1
        _make_due(delivery_id)
        before = timezone.now()
        deliver.drain_endpoint(endpoint.pk)
        second = WebhookDelivery.all_tenants.get(pk=delivery_id).next_attempt_at - before
        assert timedelta(minutes=4) <= second <= timedelta(minutes=6.1)


def test_retry_after_is_honoured(tenant_a, endpoint_for):
    with Receiver(lambda n: (429, {"Retry-After": "120"})) as busy:
        endpoint, _ = endpoint_for(tenant_a, busy.url)
        [delivery_id] = _emit(tenant_a)
        before = timezone.now()
        deliver.drain_endpoint(endpoint.pk)
    wait = WebhookDelivery.all_tenants.get(pk=delivery_id).next_attempt_at - before
    assert timedelta(seconds=119) <= wait <= timedelta(seconds=125)


def test_410_disables_the_endpoint(tenant_a, endpoint_for):
    with Receiver(lambda n: (410, {})) as gone:
        endpoint, _ = endpoint_for(tenant_a, gone.url)
        first, second = _emit(tenant_a), _emit(tenant_a)
        deliver.drain_endpoint(endpoint.pk)
        assert len(gone.received) == 1  # the second was not sent to a gone receiver
        _emit(tenant_a)  # a later alert is not even queued
        deliver.drain_endpoint(endpoint.pk)
        assert len(gone.received) == 1
    endpoint.refresh_from_db()
    assert endpoint.enabled is False and endpoint.disabled_reason == "gone"
    states = set(WebhookDelivery.all_tenants.filter(pk__in=first + second)
                 .values_list("state", flat=True))
    assert states == {"failed"}
    assert WebhookDelivery.all_tenants.count() == 2
    with tenant_scope(tenant_a):
        [item] = [i for i in attention_items() if i.key == "webhooks-disabled"]
        assert item.count() == 1


def test_redirects_are_not_followed(tenant_a, endpoint_for, settings):
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "60"
    with Receiver() as target, Receiver(lambda n: (302, {"Location": "http://127.0.0.1/x"})
                                        ) as redirecting:
        endpoint, _ = endpoint_for(tenant_a, redirecting.url)
        redirecting.script = lambda n: (307, {"Location": target.url})
        [delivery_id] = _emit(tenant_a)
        deliver.drain_endpoint(endpoint.pk)
        assert len(redirecting.received) == 1
        assert target.received == []
    row = WebhookDelivery.all_tenants.get(pk=delivery_id)
    assert row.state == "pending" and row.last_status_code == 307
    assert "redirect not followed" in row.last_error


def test_rotation_signs_with_both_secrets_for_24_hours_then_only_the_new(tenant_a, receiver,
                                                                        endpoint_for):
    endpoint, old = endpoint_for(tenant_a, receiver.url)
    endpoint, new = services.endpoint_rotate_secret(endpoint=endpoint)
    _emit(tenant_a)
    deliver.drain_endpoint(endpoint.pk)
    [during] = receiver.wait_for(1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)

    WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    _emit(tenant_a)
    deliver.drain_endpoint(endpoint.pk)
    after = receiver.wait_for(2)[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


def test_the_url_is_checked_again_at_every_try(tenant_a, receiver, endpoint_for, settings):
    """An address allowed at creation and refused later (the operator's rule changed, or the
    name resolves elsewhere now) is not called: the try fails and is retried later."""
    endpoint, _ = endpoint_for(tenant_a, receiver.url)
    [delivery_id] = _emit(tenant_a)
    settings.AGENT33_OUTBOUND_PRIVATE_NETWORKS = ""
    deliver.drain_endpoint(endpoint.pk)
    assert receiver.received == []
    row = WebhookDelivery.all_tenants.get(pk=delivery_id)
    assert row.state == "pending"
    assert row.last_error.startswith("url_not_allowed")
    [attempt] = WebhookAttempt.all_tenants.filter(delivery_id=delivery_id)
    assert attempt.status_code is None and "loopback" in attempt.error


def test_the_connection_goes_to_the_address_that_was_checked(tenant_a, receiver, endpoint_for,
                                                             monkeypatch):
    """DNS rebinding: the name resolves to an allowed address when checked; the request goes
    to that very address (Host keeps the name), not to a second lookup's answer."""
    import socket

    port = receiver.server.server_address[1]
    endpoint, secret = endpoint_for(tenant_a, receiver.url)
    WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).update(
        url=f"http://hooks.example.test:{port}/hook")
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["10.9.9.9"] * 10)

    def rebinding(host, *args, **kwargs):
        if host == "hooks.example.test":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    _emit(tenant_a)
    deliver.drain_endpoint(endpoint.pk)
    [got] = receiver.wait_for(1)
    assert got.headers["host"] == f"hooks.example.test:{port}"
    Webhook(secret).verify(got.body, got.headers)


def test_five_days_of_failures_disable_the_endpoint_and_need_attention(tenant_a, endpoint_for,
                                                                       settings):
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "60"
    with Receiver(lambda n: (500, {})) as down:
        endpoint, _ = endpoint_for(tenant_a, down.url)
        WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).update(
            failing_since=timezone.now() - timedelta(days=4, hours=23))
        [first] = _emit(tenant_a)
        deliver.drain_endpoint(endpoint.pk)
        assert WebhookEndpoint.all_tenants.get(pk=endpoint.pk).enabled  # not yet 5 days
        WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).update(
            failing_since=timezone.now() - timedelta(days=5, minutes=1))
        _emit(tenant_a)
        deliver.drain_endpoint(endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "failing"
    assert WebhookDelivery.all_tenants.get(pk=first).state == "failed"
    with tenant_scope(tenant_a):
        [item] = [i for i in attention_items() if i.key == "webhooks-disabled"]
        assert item.count() == 1
        assert "disabled_reason__in=gone,failing" in item.list_url()


def test_payloads_stay_under_20_kb(tenant_a, receiver, endpoint_for):
    endpoint, secret = endpoint_for(tenant_a, receiver.url)
    _emit(tenant_a, data={"title": "x" * 50_000, "intake_id": "intake-1"})
    deliver.drain_endpoint(endpoint.pk)
    [got] = receiver.wait_for(1)
    assert len(got.body) < 20_000
    assert json.loads(got.body)["data"]["intake_id"] == "intake-1"
    Webhook(secret).verify(got.body, got.headers)


def test_the_sweep_queues_drains_for_due_deliveries_and_frees_stuck_ones(
        tenant_a, receiver, endpoint_for, database_jobs):
    from agent33.jobs.worker import run_ready_jobs

    endpoint, _ = endpoint_for(tenant_a, receiver.url)
    [delivery_id] = _emit(tenant_a)
    # A worker died mid-try: the delivery is left `sending`, the drain flag set.
    WebhookDelivery.all_tenants.filter(pk=delivery_id).update(
        state="sending", claimed_at=timezone.now() - timedelta(minutes=5))
    WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).update(
        drain_queued_at=timezone.now() - timedelta(minutes=5))
    run_ready_jobs()  # the drain queued with the alert: nothing is due
    assert receiver.received == []
    assert deliver.sweep() == 1
    run_ready_jobs()
    receiver.wait_for(1)
    assert WebhookDelivery.all_tenants.get(pk=delivery_id).state == "delivered"


def test_a_malformed_retry_schedule_fails_the_start_up_check(settings):
    from webhooks.apps import check_retry_schedule

    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "5,soon"
    [error] = check_retry_schedule()
    assert error.id == "webhooks.E001"
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "1, 2,3"
    assert check_retry_schedule() == []
    assert deliver.retry_schedule() == (1.0, 2.0, 3.0)


def test_metrics_count_endpoints_by_state_and_waiting_deliveries(tenant_a, endpoint_for,
                                                                 api_client_for, settings):
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "60"
    with Receiver(lambda n: (410, {})) as gone, Receiver(lambda n: (500, {})) as down:
        endpoint_for(tenant_a, down.url)
        gone_endpoint, _ = endpoint_for(tenant_a, gone.url)
        _emit(tenant_a)
        deliver.drain_endpoint(gone_endpoint.pk)
    scrape = api_client_for(None, scopes=["metrics:read"]).get("/metrics").content.decode()
    assert 'agent33_webhook_endpoints{state="enabled"} 1.0' in scrape
    assert 'agent33_webhook_endpoints{state="gone"} 1.0' in scrape
    assert 'agent33_webhook_deliveries_unfinished{state="pending"} 1.0' in scrape


def test_a_large_value_is_left_out_to_stay_under_20_kb(tenant_a, receiver, endpoint_for):
    endpoint, secret = endpoint_for(tenant_a, receiver.url)
    _emit(tenant_a, data={"limits": {f"k{i}": "v" * 100 for i in range(500)},
                          "budget_id": "budget-1"})
    deliver.drain_endpoint(endpoint.pk)
    [got] = receiver.wait_for(1)
    data = Webhook(secret).verify(got.body, got.headers)["data"]
    assert len(got.body) < 20_000
    assert data == {"limits": "(left out: too large)", "budget_id": "budget-1"}


def test_a_deleted_endpoint_mid_try_records_nothing(tenant_a, receiver, endpoint_for,
                                                    monkeypatch):
    endpoint, _ = endpoint_for(tenant_a, receiver.url)
    real_post = deliver.post

    def post_then_delete(url, body, headers):
        answer = real_post(url, body, headers)
        WebhookEndpoint.all_tenants.filter(pk=endpoint.pk).delete()  # meanwhile, a DELETE
        return answer

    monkeypatch.setattr(deliver, "post", post_then_delete)
    _emit(tenant_a)
    deliver.drain_endpoint(endpoint.pk)
    assert len(receiver.wait_for(1)) == 1
    assert WebhookAttempt.all_tenants.count() == 0
    assert WebhookDelivery.all_tenants.count() == 0


def test_a_retry_due_within_a_minute_queues_its_own_delayed_drain(tenant_a, endpoint_for,
                                                                  settings, database_jobs):
    from django_tasks_db.models import DBTaskResult

    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = "20,3600"
    with Receiver(lambda n: (500, {})) as down:
        endpoint, _ = endpoint_for(tenant_a, down.url)
        [delivery_id] = _emit(tenant_a)
        DBTaskResult.objects.all().delete()  # the alert's own drain
        deliver.drain_endpoint(endpoint.pk)
        due = WebhookDelivery.all_tenants.get(pk=delivery_id).next_attempt_at
        [retry] = DBTaskResult.objects.filter(task_path="webhooks.tasks.drain")
        assert timedelta(0) < retry.run_after - due <= timedelta(seconds=1)
        _make_due(delivery_id)
        deliver.drain_endpoint(endpoint.pk)  # fails again; the next try is an hour away
        assert DBTaskResult.objects.filter(task_path="webhooks.tasks.drain").count() == 1
