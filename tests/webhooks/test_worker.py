"""Alerts through a real `manage.py worker`: a budget moved to pending_approval in one
process is delivered by the worker to a receiver on 127.0.0.1, retried after a 500 (the
sweep picks the retry up), and verified with the `standardwebhooks` library."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from bench.common import job_worker
from bench.receivers import Receiver
from tests.jobs.conftest import embedded_env as embedded_env  # a fixture
from tests.jobs.conftest import query
from tests.workers import wait_for

from .conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.slow

SETUP = """
from django.db import transaction
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from operations.services import budget_create, budget_transition
from tests.origins import operator
from webhooks.services import endpoint_create
tenant = Tenant.objects.create(slug="acme", name="ACME")
with tenant_scope(tenant):
    endpoint, secret = endpoint_create(tenant=tenant, url=URL,
                                       event_types=["budget.pending_approval"])
    budget = budget_create(tenant=tenant, task_id="deploy")
    with transaction.atomic():
        budget_transition(budget=budget, origin=operator(), status="pending_approval")
out = [endpoint.pk, secret, budget.pk]
"""

STATE = """
from webhooks.models import WebhookAttempt, WebhookDelivery
out = [(d.state, d.attempt_count,
        [a.status_code for a in WebhookAttempt.all_tenants.filter(delivery=d)])
       for d in WebhookDelivery.all_tenants.filter(endpoint_id=ENDPOINT)]
"""


def test_the_worker_delivers_and_retries_an_alert(embedded_env, tmp_path):
    env = {**embedded_env, "AGENT33_OUTBOUND_PRIVATE_NETWORKS": "127.0.0.1/32",
           "AGENT33_SECRET_KEYS": TEST_SECRET_KEY, "AGENT33_WEBHOOK_RETRY_SCHEDULE": "1,1"}
    with Receiver(lambda n: (500, {}) if n == 0 else (200, {})) as receiver:
        endpoint_id, secret, budget_id = query(env, SETUP.replace("URL", repr(receiver.url)))
        # Nothing was sent by the process that made the change: only the worker sends.
        assert receiver.received == []
        with open(tmp_path / "worker.log", "wb") as log, job_worker(env, concurrency=2,
                                                                     stdout=log, stderr=log):
            received = receiver.wait_for(2, timeout=60)
            state = STATE.replace("ENDPOINT", repr(endpoint_id))
            wait_for(lambda: query(env, state)[0][0] == "delivered", timeout=30,
                     message="the delivery to be recorded")
    assert len(received) == 2
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    payload = Webhook(secret).verify(received[1].body, received[1].headers)
    assert payload["type"] == "budget.pending_approval"
    assert payload["data"]["budget_id"] == budget_id
    [(delivery_state, attempts, codes)] = query(env, state)
    assert (delivery_state, attempts, codes) == ("delivered", 2, [500, 200])
