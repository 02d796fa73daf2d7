"""GET /metrics: who may read it, and what its series say (in-process, both databases).

The multi-worker behaviour (two gunicorn workers, one answer) is in test_metrics_workers.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from agent33.auth.scopes import ADMIN, METRICS_READ, WORKFLOWS_READ
from agent33.observability.row_counts import install_row_counters, row_counters
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.services import token_issue
from multimodal.models import MultimodalRequest, RequestCount
from operations import services as operations
from operations.models import AutonomyBudget, ProcessCount, Trace, WorkflowRun
from outcomes.services import event_record
from tests.conftest import make_client
from tests.factories.multimodal import MultimodalRequestFactory
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)
from tests.observability.helpers import samples, value
from tests.origins import runtime

pytestmark = pytest.mark.django_db


@pytest.fixture
def scraper(api_client_for):
    client = api_client_for(None, scopes=[METRICS_READ])

    def scrape() -> dict:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return scrape


# --- who may read ---------------------------------------------------------------------------


def test_anonymous_callers_get_401(anonymous_client):
    response = anonymous_client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_tenant_token_is_refused_even_with_admin(api_client_for, tenant_a):
    response = api_client_for(tenant_a, scopes=[ADMIN]).get("/metrics")
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "operator_token_required"
    assert "all-tenants (operator) token" in body["detail"]
    assert "tenant-a" not in response.content.decode()


def test_an_operator_token_needs_metrics_read(api_client_for):
    response = api_client_for(None, scopes=[WORKFLOWS_READ]).get("/metrics")
    assert response.status_code == 403
    assert response.json() == {"detail": "Missing required scope: metrics:read",
                               "code": "missing_scope"}


@pytest.mark.parametrize("scopes", [[METRICS_READ], ["metrics:*"], [ADMIN]])
def test_an_operator_token_with_metrics_read_gets_prometheus_text(api_client_for, scopes):
    response = api_client_for(None, scopes=scopes).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    assert "# TYPE agent33_processes gauge" in response.content.decode()


def test_openmetrics_is_served_when_the_scraper_asks_for_it(api_client_for):
    response = api_client_for(None, scopes=[METRICS_READ]).get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_metrics_read_is_never_issued_to_a_tenant_token(tenant_a):
    for scopes in ([METRICS_READ], ["metrics:*"]):
        with pytest.raises(ValidationError, match="Only an all-tenants"):
            token_issue(tenant=tenant_a, scopes=scopes)
    with pytest.raises(CommandError, match="Only an all-tenants"):
        call_command("issue_token", "--tenant", "tenant-a", "--scopes", "metrics:read")
    assert token_issue(tenant=None, scopes=[METRICS_READ]).token.scopes == [METRICS_READ]


# --- domain series ------------------------------------------------------------------------


def _db_processes() -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for type_name, model, column in (
        ("trace", Trace, "status"), ("autonomy_budget", AutonomyBudget, "status"),
        ("workflow", WorkflowRun, "status"),
        ("multimodal_request", MultimodalRequest, "state"),
    ):
        for row in model.all_tenants.values(column).annotate(n=Count("id")):
            counts[(type_name, row[column])] = row["n"]
    return counts


def test_domain_series_count_every_tenants_rows(scraper, tenant_a, tenant_b, api_client_for):
    TraceFactory.create_batch(3, tenant=tenant_a, status="running")
    TraceFactory.create_batch(2, tenant=tenant_b, status="failed")
    AutonomyBudgetFactory(tenant=tenant_b, status="active")
    MultimodalRequestFactory.create_batch(2, tenant=tenant_a, modality="text_to_speech",
                                          provider="espeak", state="completed")
    MultimodalRequestFactory(tenant=tenant_b, modality="vision_analysis",
                             provider="tesseract", state="failed")
    # A control through the API (the hand-written statement path) and a transition.
    executor = api_client_for(tenant_a, scopes=["workflows:write", "workflows:execute"])
    run_id = executor.post("/v1/operations/workflow-runs",
                           {"workflow_name": "nightly", "status": "running"},
                           format="json").json()["id"]
    assert executor.post(f"/v1/operations/processes/{run_id}/control",
                         {"action": "pause", "reason": "metrics"},
                         format="json").status_code == 200
    assert executor.post(f"/v1/operations/processes/{run_id}/control",
                         {"action": "resume"}, format="json").status_code == 200
    with tenant_scope(tenant_b):
        operations.intake_open_for_decline(tenant=tenant_b, metric_type="latency_ms",
                                           domain="search", title="latency declines")
        ImprovementIntakeFactory(tenant=tenant_b)  # not opened by a decline
        for value_ in (0.9, 0.8):
            event_record(tenant=tenant_b, domain="search", event_type="run",
                         metric_type="quality_score", value=value_)

    scraped = scraper()

    assert value(scraped, "agent33_processes", type="trace", status="running") == 3
    assert value(scraped, "agent33_processes", type="trace", status="failed") == 2
    assert value(scraped, "agent33_processes", type="autonomy_budget", status="active") == 1
    assert value(scraped, "agent33_processes", type="workflow", status="running") == 1
    assert value(scraped, "agent33_processes", type="workflow", status="paused") == 0
    assert value(scraped, "agent33_processes", type="improvement_intake",
                 status="submitted") == 2
    assert value(scraped, "agent33_processes", type="multimodal_request",
                 status="completed") == 2
    for (type_name, status), count in _db_processes().items():
        assert value(scraped, "agent33_processes", type=type_name, status=status) == count
    assert value(scraped, "agent33_multimodal_requests", modality="text_to_speech",
                 provider="espeak", state="completed") == 2
    assert value(scraped, "agent33_multimodal_requests", modality="vision_analysis",
                 provider="tesseract", state="failed") == 1
    assert value(scraped, "agent33_controls_applied_total", type="workflow",
                 action="pause") == 1
    assert value(scraped, "agent33_controls_applied_total", type="workflow",
                 action="resume") == 1
    assert value(scraped, "agent33_intakes_opened_by_declines_total") == 1
    assert value(scraped, "agent33_outcome_events_ingested_total",
                 metric_type="quality_score") == 2


def _counted() -> dict[tuple[str, str], int]:
    rows = (ProcessCount.all_tenants.values_list("process_type", "status")
            .annotate(total=Sum("count")).filter(total__gt=0))
    return {(process_type, status): total for process_type, status, total in rows}


def _actual() -> dict[tuple[str, str], int]:
    return {key: n for key, n in _db_processes().items()
            if key[0] != "multimodal_request" and n}


def test_counts_follow_every_kind_of_write(tenant_a, tenant_b):
    """ORM saves, bulk inserts, conditional updates, the expiry sweep's batched update and
    deletes all keep the counts equal to the rows."""
    past = timezone.now() - timedelta(minutes=1)
    TraceFactory.create_batch(4, tenant=tenant_a)
    Trace.all_tenants.bulk_create(
        [Trace(tenant=tenant_b, task_id=f"bulk-{n}", status="completed") for n in range(5)]
    )
    Trace.all_tenants.filter(tenant=tenant_a).update(status="failed")
    Trace.all_tenants.filter(tenant=tenant_a)[:1].get().delete()
    AutonomyBudgetFactory.create_batch(3, tenant=tenant_a, status="active", expires_at=past)
    AutonomyBudgetFactory(tenant=tenant_b, status="suspended", expires_at=past)
    AutonomyBudgetFactory(tenant=tenant_b, status="active")
    assert len(operations.budgets_expire()) == 4
    with tenant_scope(tenant_a):
        run = operations.workflow_run_create(tenant=tenant_a, workflow_name="w")
        operations.workflow_run_transition(run=run, origin=runtime(), status="running")
        operations.workflow_run_transition(run=run, origin=runtime(), status="completed")
    assert _counted() == _actual() == {
        ("trace", "failed"): 3, ("trace", "completed"): 5,
        ("autonomy_budget", "expired"): 4, ("autonomy_budget", "active"): 1,
        ("workflow", "completed"): 1,
    }

    request = MultimodalRequestFactory(tenant=tenant_a, provider="espeak")
    MultimodalRequest.all_tenants.filter(pk=request.pk).update(state="processing")
    MultimodalRequest.all_tenants.filter(pk=request.pk).update(state="completed",
                                                               provider="openai")
    assert {(r.provider, r.state): r.count for r in RequestCount.all_tenants.all()} == {
        ("espeak", "pending"): 0, ("espeak", "processing"): 0, ("openai", "completed"): 1,
    }


def _drop_triggers() -> None:
    with connection.cursor() as cursor:
        for counter in row_counters():
            table = connection.ops.quote_name(counter.source._meta.db_table)
            for op in ("ins", "upd", "del"):
                name = f"agent33_count_{counter.name}_{op}"
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}"
                               + (f" ON {table}" if connection.vendor == "postgresql" else ""))


def test_the_first_install_counts_the_rows_already_there(tenant_a):
    TraceFactory.create_batch(2, tenant=tenant_a)
    _drop_triggers()
    try:
        TraceFactory.create_batch(3, tenant=tenant_a, status="completed")  # not counted
        assert _counted() == {("trace", "running"): 2}
    finally:
        recounted = install_row_counters()
    assert "process_trace" in recounted
    assert _counted() == {("trace", "running"): 2, ("trace", "completed"): 3}
    TraceFactory(tenant=tenant_a)
    assert _counted() == {("trace", "running"): 3, ("trace", "completed"): 3}
    assert install_row_counters() == []  # installed: nothing to recount


def test_recount_rows_repairs_counts_changed_around_the_triggers(tenant_a):
    TraceFactory.create_batch(2, tenant=tenant_a)
    ProcessCount.all_tenants.update(count=40)
    call_command("recount_rows")
    assert _counted() == {("trace", "running"): 2}


def test_http_series_count_responses_by_view_and_status(scraper, client_a, tenant_a):
    before = scraper()
    run = WorkflowRunFactory(tenant=tenant_a)
    assert client_a.get("/v1/auth/whoami").status_code == 200
    assert client_a.get(f"/v1/operations/workflow-runs/{run.pk}").status_code == 200
    assert client_a.get("/v1/operations/workflow-runs/wfrun-missing").status_code == 404
    assert make_client().get("/v1/auth/whoami").status_code == 401
    after = scraper()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    responses = "django_http_responses_total_by_status_view_method_total"
    assert delta(responses, status="200", view="whoami", method="GET") == 1
    assert delta(responses, status="401", view="whoami", method="GET") == 1
    # One series per route, whatever the id in the path.
    assert delta(responses, status="200", view="workflow-run-detail", method="GET") == 1
    assert delta(responses, status="404", view="workflow-run-detail", method="GET") == 1
    assert delta("django_http_requests_latency_seconds_by_view_method_count",
                 view="whoami", method="GET") == 2
    assert not any(run.pk in str(labels) for _, labels in after)
