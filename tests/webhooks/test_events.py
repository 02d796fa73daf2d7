"""Each alert source fires once, after its change commits, with what a receiver needs:
declines (intake.opened, benchmark.regressed), spend thresholds (once per UTC day each),
budgets waiting for approval, failed multimodal requests (never cancellations) and finished
batches."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agent33.tenancy.context import tenant_scope
from multimodal.choices import RequestState
from multimodal.models import MultimodalPolicy
from multimodal.services.requests import request_cancel, request_end
from multimodal.services.spend import spend_settle
from operations.choices import ChangePath
from operations.services import budget_create, budget_transition
from operations.signals import batch_completed
from operations.transitions import Origin
from tests.factories.multimodal import MultimodalRequestFactory
from tests.origins import operator
from tests.outcomes.test_ctrf import nightly
from tests.outcomes.test_declines import post_series
from webhooks.models import SpendThresholdCrossing, WebhookDelivery

pytestmark = pytest.mark.django_db

USD = 1_000_000_000  # nano-dollars


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def payloads(tenant, event_type=None):
    rows = WebhookDelivery.all_tenants.filter(tenant=tenant).order_by("created_at", "id")
    if event_type:
        rows = rows.filter(event_type=event_type)
    return [json.loads(row.body) for row in rows]


def test_a_decline_sends_intake_opened_once(tenant_a, tenant_b, api_client_for, receiver,
                                            endpoint_for, committed):
    endpoint_for(tenant_a, receiver.url, ["intake.opened", "benchmark.regressed"])
    endpoint_for(tenant_b, receiver.url, ["intake.opened"])
    writer = api_client_for(tenant_a, scopes=["outcomes:write"])
    committed(lambda: post_series(writer, [0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5]))
    committed(lambda: post_series(writer, [0.4, 0.3], start=10))  # still open: no second
    [alert] = payloads(tenant_a)
    assert alert["type"] == "intake.opened"
    data = alert["data"]
    assert data["intake_id"].startswith("intake-")
    assert data["title"] == "success_rate declining in support"
    assert data["metric"] == "success_rate" and data["domain"] == "support"
    assert data["change_pct"] == pytest.approx(-44.44, abs=0.01)
    assert data["links"]["api"] == f"/v1/operations/improvements/{data['intake_id']}"
    assert data["links"]["staff"].startswith("/admin/operations/improvementintake/")
    assert payloads(tenant_b) == []  # another tenant's endpoints hear nothing


def test_a_ctrf_decline_sends_benchmark_regressed(tenant_a, api_client_for, receiver,
                                                  endpoint_for, committed):
    endpoint_for(tenant_a, receiver.url, ["benchmark.regressed"])
    writer = api_client_for(tenant_a, scopes=["outcomes:write"])

    def post(body):
        response = writer.post("/v1/outcomes/ctrf", body, format="json")
        assert response.status_code == 201, response.content

    for night in range(4):
        committed(lambda n=night: post(nightly(n)))
    assert payloads(tenant_a) == []
    for night in (4, 5):
        committed(lambda n=night: post(nightly(n, failing={"hub scale"})))
    [alert] = payloads(tenant_a)
    assert alert["type"] == "benchmark.regressed"
    assert alert["data"]["test"] == "hub scale"
    assert alert["data"]["domain"] == "benchmarks.nightly"
    assert alert["data"]["change_pct"] < 0


def test_spend_thresholds_fire_once_each_per_utc_day(tenant_a, receiver, endpoint_for,
                                                     committed):
    endpoint_for(tenant_a, receiver.url, ["spend.threshold_crossed"])
    MultimodalPolicy.all_tenants.create(tenant=tenant_a, daily_spend_limit_usd="10")
    today = timezone.now().date()

    def spend(usd: float, day: date = today):
        with tenant_scope(tenant_a):
            committed(lambda: spend_settle(tenant_id=tenant_a.pk, day=day, release_nanos=0,
                                           cost_nanos=int(usd * USD)))

    spend(4)  # 40 %
    assert payloads(tenant_a) == []
    spend(1.5)  # 55 %
    spend(1)  # 65 %: 50 % already sent today
    spend(3)  # 95 %
    spend(1)  # 105 %
    spend(2)  # 125 %
    alerts = payloads(tenant_a)
    assert [a["data"]["threshold_pct"] for a in alerts] == [50, 80, 100]
    assert alerts[0]["data"]["spent_usd"] == "5.50" and alerts[0]["data"]["limit_usd"] == "10.00"
    assert {a["type"] for a in alerts} == {"spend.threshold_crossed"}
    # Another UTC day starts again.
    tomorrow = date.fromordinal(today.toordinal() + 1)
    spend(6, tomorrow)
    assert [a["data"]["threshold_pct"] for a in payloads(tenant_a)] == [50, 80, 100, 50]


def test_a_threshold_already_recorded_today_is_not_sent_again(tenant_a, receiver,
                                                              endpoint_for, committed):
    """What a settlement that lost the race sees: the (tenant, day, threshold) row exists."""
    endpoint_for(tenant_a, receiver.url, ["spend.threshold_crossed"])
    MultimodalPolicy.all_tenants.create(tenant=tenant_a, daily_spend_limit_usd="10")
    today = timezone.now().date()
    SpendThresholdCrossing.all_tenants.create(tenant=tenant_a, day=today, threshold=50)
    with tenant_scope(tenant_a):
        committed(lambda: spend_settle(tenant_id=tenant_a.pk, day=today, release_nanos=0,
                                       cost_nanos=9 * USD))
    assert [a["data"]["threshold_pct"] for a in payloads(tenant_a)] == [80]


def test_no_limit_no_threshold_alert(tenant_a, receiver, endpoint_for, committed):
    endpoint_for(tenant_a, receiver.url, ["spend.threshold_crossed"])
    with tenant_scope(tenant_a):
        committed(lambda: spend_settle(tenant_id=tenant_a.pk, day=timezone.now().date(),
                                       release_nanos=0, cost_nanos=100 * USD))
    assert payloads(tenant_a) == []


def test_a_budget_waiting_for_approval_is_announced_once(tenant_a, receiver, endpoint_for,
                                                         committed):
    endpoint_for(tenant_a, receiver.url, ["budget.pending_approval"])
    with tenant_scope(tenant_a):
        budget = budget_create(tenant=tenant_a, task_id="deploy", limits={"usd": 5})
        committed(lambda: budget_transition(budget=budget, origin=operator(),
                                            status="pending_approval", reason="needs $5"))
        committed(lambda: budget_transition(budget=budget, origin=operator(), status="active"))
    [alert] = payloads(tenant_a)
    assert alert["type"] == "budget.pending_approval"
    assert alert["data"]["budget_id"] == budget.pk
    assert alert["data"]["task_id"] == "deploy"
    assert alert["data"]["reason"] == "needs $5"
    assert alert["data"]["links"]["api"] == f"/v1/operations/budgets/{budget.pk}"


def test_a_failed_request_is_announced_and_a_cancelled_one_is_not(tenant_a, receiver,
                                                                  endpoint_for, committed):
    endpoint_for(tenant_a, receiver.url, ["multimodal.request_failed"])
    failing = MultimodalRequestFactory(tenant=tenant_a, state=RequestState.PROCESSING,
                                       claim_token="claim-1")
    cancelled = MultimodalRequestFactory(tenant=tenant_a, state=RequestState.PROCESSING,
                                         claim_token="claim-2")
    worker = Origin.system("worker", path=ChangePath.WORKER)
    with tenant_scope(tenant_a):
        committed(lambda: request_end(failing, RequestState.FAILED, origin=worker,
                                      error_message="timed out after 60 s",
                                      claim_token="claim-1"))
        committed(lambda: request_cancel(mm_request=cancelled, origin=operator()))
    [alert] = payloads(tenant_a)
    assert alert["type"] == "multimodal.request_failed"
    assert alert["data"]["request_id"] == failing.pk
    assert alert["data"]["timed_out"] is True
    assert alert["data"]["error"] == "timed out after 60 s"
    assert alert["data"]["links"]["api"] == f"/v1/multimodal/requests/{failing.pk}"


def test_a_finished_batch_is_announced(tenant_a, tenant_b, receiver, endpoint_for):
    """operations sends `batch_completed` with its Batch row once a batch ends (that code
    lands separately); this sends the signal as it does, with the attributes alerts read."""
    endpoint_for(tenant_a, receiver.url, ["batch.completed"])
    batch = SimpleNamespace(pk="batch-1", tenant_id=tenant_a.pk, action="pause",
                            state="completed", matched=12, done=10, failed=1, skipped=1,
                            finished_at=timezone.now())
    batch_completed.send(sender=type(batch), batch=batch)
    [alert] = payloads(tenant_a)
    assert alert["type"] == "batch.completed"
    assert {k: alert["data"][k] for k in ("batch_id", "action", "state", "matched", "done",
                                          "failed", "skipped")} == {
        "batch_id": "batch-1", "action": "pause", "state": "completed", "matched": 12,
        "done": 10, "failed": 1, "skipped": 1}
    assert alert["data"]["links"]["api"] == "/v1/operations/batches/batch-1"
    assert payloads(tenant_b) == []


def test_unsubscribed_and_disabled_endpoints_get_nothing(tenant_a, receiver, endpoint_for):
    from webhooks.services import endpoint_update

    endpoint_for(tenant_a, receiver.url, ["intake.opened"])
    off, _ = endpoint_for(tenant_a, receiver.url, ["batch.completed"])
    with tenant_scope(tenant_a):
        endpoint_update(endpoint=off, enabled=False)
    batch = SimpleNamespace(pk="batch-2", tenant_id=tenant_a.pk, action="cancel",
                            state="completed", matched=1, done=1, failed=0, skipped=0,
                            finished_at=timezone.now())
    batch_completed.send(sender=type(batch), batch=batch)
    assert payloads(tenant_a) == []
