"""AGENT33_EVENT_RETENTION_DAYS: old raw events go in bounded batches; rollups stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agent33.tenancy.context import tenant_scope
from outcomes.models import OutcomeCount, OutcomeEvent, OutcomeRollup
from outcomes.selectors import summary_get
from outcomes.services import event_record_bulk, events_purge_expired, outcome_rollups_rebuild

from .conftest import event_body

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


def seed(tenant, days_ago: list[float], now: datetime = NOW, **fields) -> None:
    event_record_bulk(tenant=tenant, events=[
        event_body(metric_type="latency_ms", value=float(10 + i), **fields,
                   occurred_at=(now - timedelta(days=age)).isoformat())
        for i, age in enumerate(days_ago)
    ])


def series(client, **params) -> dict:
    response = client.get("/v1/outcomes/series", {"metric_type": "latency_ms", **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_unset_retention_keeps_every_event(settings, tenant_a):
    settings.AGENT33_EVENT_RETENTION_DAYS = None
    seed(tenant_a, [400, 1])
    assert events_purge_expired(now=NOW) == 0
    assert OutcomeEvent.all_tenants.count() == 2


def test_old_events_go_in_batches_and_series_still_answer(settings, outcomes_a, tenant_a,
                                                          tenant_b):
    settings.AGENT33_EVENT_RETENTION_DAYS = 30
    seed(tenant_a, [45.0] * 7 + [31.0, 29.0, 1.0], domain="old")
    seed(tenant_b, [90.0, 2.0])
    params = {"bucket": "day", "from": (NOW - timedelta(days=50)).isoformat(),
              "to": NOW.isoformat()}
    before = series(outcomes_a, **params)

    assert events_purge_expired(now=NOW, batch_size=3) == 9  # 8 of A's, 1 of B's
    assert sorted(OutcomeEvent.all_tenants.values_list("tenant_id", flat=True)) == [
        "tenant-a", "tenant-a", "tenant-b"]
    assert series(outcomes_a, **params) == before  # from the rollups, untouched
    assert before["summary"]["count"] == 10
    with tenant_scope(tenant_a):
        assert summary_get(tenant=tenant_a).total_events == 2
        assert OutcomeCount.objects.get(domain="old").count == 2
    # Nothing left to do: a second run removes nothing.
    assert events_purge_expired(now=NOW) == 0


def test_each_run_is_bounded(settings, tenant_a):
    settings.AGENT33_EVENT_RETENTION_DAYS = 1
    seed(tenant_a, [10.0] * 7)
    assert events_purge_expired(now=NOW, batch_size=2, max_batches=2) == 4
    assert events_purge_expired(now=NOW, batch_size=2, max_batches=2) == 3


def test_the_periodic_job_is_scheduled_and_runs_on_the_worker(settings, database_jobs,
                                                              tenant_a):
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    from agent33 import jobs
    from agent33.jobs.worker import run_ready_jobs

    [entry] = [e for e in settings.AGENT33_SCHEDULE.values()
               if e["job"] == "outcomes.purge_expired_events"]
    assert entry["every"] <= 3600
    settings.AGENT33_EVENT_RETENTION_DAYS = 1
    seed(tenant_a, [400.0, 500.0])  # relative to NOW, long before today
    with transaction.atomic():
        jobs.enqueue("outcomes.purge_expired_events")
    assert run_ready_jobs() == ["successful"]
    assert DBTaskResult.objects.get().return_value == 2
    assert not OutcomeEvent.all_tenants.exists()


def test_purge_command_and_days_override(tenant_a):
    seed(tenant_a, [3000.0, 0.0])
    call_command("outcomes_purge_events", "--days", "365")
    assert OutcomeEvent.all_tenants.count() == 1


def test_rollup_rebuild_reproduces_what_ingest_kept(tenant_a):
    seed(tenant_a, [1.5, 1.49, 0.2, 0.1], domain="a", event_type="x")
    seed(tenant_a, [0.3], domain="b", event_type="y")
    fields = ("metric_type", "domain", "event_type", "span", "bucket_start", "count", "total",
              "minimum", "maximum")

    def snapshot():
        return sorted(OutcomeRollup.all_tenants.values_list(*fields))

    kept = snapshot()
    OutcomeRollup.all_tenants.all().delete()
    assert outcome_rollups_rebuild(tenant=tenant_a) == len(kept)
    assert snapshot() == kept
    call_command("outcomes_rebuild_rollups", "--tenant", tenant_a.slug)
    assert snapshot() == kept


def test_rebuild_after_retention_keeps_the_rollups_of_removed_events(settings, outcomes_a,
                                                                      tenant_a):
    settings.AGENT33_EVENT_RETENTION_DAYS = 30
    now = timezone.now()
    seed(tenant_a, [60.0, 29.0, 2.0], now=now)
    events_purge_expired()
    assert OutcomeEvent.all_tenants.count() == 2
    params = {"bucket": "week", "from": (now - timedelta(days=70)).isoformat(),
              "to": now.isoformat()}
    before = series(outcomes_a, **params)
    OutcomeRollup.all_tenants.filter(bucket_start__gte=now - timedelta(days=3)).delete()
    assert series(outcomes_a, **params)["summary"]["count"] == 2  # the last day's are gone
    outcome_rollups_rebuild(tenant=tenant_a)  # from the first midnight after the cutoff
    assert series(outcomes_a, **params) == before
    assert before["summary"]["count"] == 3
