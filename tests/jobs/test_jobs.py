"""The one enqueue call and what happens to a job, in-process: arguments, tenant and request
id travelling with it, retries and backoff, failure shown to staff (/metrics, "Needs
attention", the admin list), the schedule, and recovery of jobs whose worker vanished."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from agent33 import jobs
from agent33.jobs.models import ScheduleState, WorkerHeartbeat
from agent33.jobs.schedule import queue_due
from agent33.jobs.worker import Worker, run_ready_jobs
from agent33.observability import context
from tests.jobs.slow_jobs import tasks as test_jobs  # noqa: F401  (registers the test jobs)

pytestmark = pytest.mark.django_db


def queue(name: str, **kwargs) -> DBTaskResult:
    with transaction.atomic():
        jobs.enqueue(name, **kwargs)
    return DBTaskResult.objects.latest("enqueued_at")


def test_a_job_carries_its_tenant_and_the_request_id(database_jobs, tenant_a):
    token = context.bind(context.RequestContext(request_id="req-42"))
    try:
        row = queue("tests.echo_context", tenant_id=tenant_a.pk, value=7)
    finally:
        context.reset(token)
    assert row.status == "READY" and row.task_path == "tests.jobs.slow_jobs.tasks.echo_context"
    assert run_ready_jobs() == ["successful"]
    row.refresh_from_db()
    assert row.return_value == {"value": 7, "tenant": tenant_a.pk, "request_id": "req-42"}


@pytest.mark.parametrize("backend", ["DatabaseBackend", "CeleryBackend", "ImmediateBackend"])
def test_arguments_must_be_plain_json(settings, backend, tenant_a):
    settings.TASKS = {"default": {"BACKEND": f"agent33.jobs.backends.{backend}"}}
    with pytest.raises(TypeError, match="plain JSON"):
        jobs.enqueue("tests.echo_context", value=tenant_a)
    with pytest.raises(LookupError, match=r"no job is registered as 'tests\.nope'"):
        jobs.enqueue("tests.nope")


def test_a_job_queued_in_a_transaction_that_rolls_back_does_not_exist(database_jobs):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue("tests.echo_context", value=1)
        raise RuntimeError("the work that needed it failed")
    assert DBTaskResult.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_in_process_test_backend_raises_the_jobs_error():
    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        jobs.enqueue("tests.always_fails", reason="boom")


def test_a_failing_job_is_retried_with_backoff_then_failed(database_jobs):
    row = queue("tests.always_fails", reason="the receiver said no")  # 2 tries, 0.2 s apart
    before = timezone.now()
    assert run_ready_jobs() == ["retry"]
    row.refresh_from_db()
    assert row.status == "READY" and len(row.worker_ids) == 1
    assert "RuntimeError: the receiver said no" in row.traceback
    assert before + timedelta(seconds=0.15) <= row.run_after  # backoff 0.2 s ± 20 %
    assert run_ready_jobs() == []  # not before its backoff
    DBTaskResult.objects.filter(pk=row.pk).update(run_after=timezone.now())
    assert run_ready_jobs() == ["failed"]
    row.refresh_from_db()
    assert (row.status, len(row.worker_ids)) == ("FAILED", 2)
    assert row.exception_class_path == "builtins.RuntimeError"


def test_a_job_may_ask_to_be_retried_after_a_given_time(database_jobs):
    row = queue("tests.retry_after", seconds=42)
    start = timezone.now()
    assert run_ready_jobs() == ["retry"]
    row.refresh_from_db()
    # Its own 42 s, not the 600 s of its backoff schedule.
    assert start + timedelta(seconds=41) <= row.run_after <= start + timedelta(seconds=45)


def test_failed_jobs_are_counted_in_metrics(database_jobs, operator_client, api_client_for):
    from agent33.auth.scopes import METRICS_READ

    queue("tests.always_fails", reason="x")
    queue("tests.echo_context", value=1)
    run_ready_jobs()
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
    run_ready_jobs()
    scraper = api_client_for(None, scopes=[METRICS_READ])
    text = scraper.get("/metrics").content.decode()
    assert 'agent33_jobs{job="tests.always_fails",state="failed"} 1.0' in text
    queue("tests.echo_context", value=2)
    text = scraper.get("/metrics").content.decode()
    assert 'agent33_jobs{job="tests.echo_context",state="queued"} 1.0' in text


def _fail(tenant_id: str | None) -> DBTaskResult:
    row = queue("tests.always_fails", tenant_id=tenant_id, reason=f"failed for {tenant_id}")
    DBTaskResult.objects.filter(pk=row.pk).update(status="FAILED", worker_ids=["w", "w"],
                                                  traceback="RuntimeError: failed")
    return row


def test_staff_see_failed_jobs_in_needs_attention_and_the_admin(
        database_jobs, client, staff_user_factory, tenant_a, tenant_b):
    from operations.hub import attention_items

    _fail(tenant_a.pk)
    _fail(tenant_b.pk)
    _fail(None)  # a platform job
    [item] = [i for i in attention_items() if i.key == "jobs-failed"]

    root = staff_user_factory("root", superuser=True)
    client.force_login(root)
    page = client.get("/admin/operations/hub/")
    assert page.status_code == 200
    assert b'id="attention-jobs-failed"' in page.content
    listing = client.get(item.list_url())
    assert listing.status_code == 200
    assert listing.content.count(b"RuntimeError: failed") == 3

    from django.contrib.auth.models import Permission

    limited = staff_user_factory("ann", tenants=[tenant_a])
    client.force_login(limited)
    assert client.get(item.list_url()).status_code == 403  # the list needs its permission
    limited.user_permissions.add(Permission.objects.get(codename="view_dbtaskresult"))
    listing = client.get(item.list_url())
    assert listing.status_code == 200
    assert listing.content.count(b"RuntimeError: failed") == 1
    assert tenant_a.pk.encode() in listing.content and tenant_b.pk.encode() not in listing.content


def test_needs_attention_counts_failed_jobs_in_the_staff_scope(database_jobs, tenant_a,
                                                               tenant_b):
    from agent33.tenancy.context import ALL_TENANTS, TenantSet, tenant_scope
    from operations.hub import attention_items

    _fail(tenant_a.pk)
    _fail(tenant_b.pk)
    _fail(None)
    [item] = [i for i in attention_items() if i.key == "jobs-failed"]
    with tenant_scope(ALL_TENANTS):
        assert item.count() == 3
    with tenant_scope(TenantSet({tenant_a.pk})):
        assert item.count() == 1


def test_staff_queue_a_failed_job_again(database_jobs, client, staff_user_factory):
    row = _fail(None)
    client.force_login(staff_user_factory("root", superuser=True))
    response = client.post("/admin/django_tasks_database/dbtaskresult/",
                           {"action": "queue_again", "_selected_action": [str(row.pk)]},
                           follow=True)
    assert response.status_code == 200
    assert b"1 failed jobs queued again." in response.content
    [fresh] = DBTaskResult.objects.all()
    assert fresh.pk != row.pk and fresh.status == "READY" and fresh.worker_ids == []
    assert fresh.args_kwargs["kwargs"]["reason"] == "failed for None"


def test_the_schedule_queues_each_periodic_job_once_per_period(database_jobs, settings):
    assert sorted(queue_due()) == sorted(settings.AGENT33_SCHEDULE)
    assert queue_due() == []  # a second worker, or the next second: nothing is due
    queued = sorted(DBTaskResult.objects.values_list("task_path", flat=True))
    assert queued == ["agent33.tasks.compact_row_counts", "agent33.tasks.prune_jobs",
                      "agent33.tasks.purge_idempotency_records",
                      "agent33.tasks.purge_rate_counters", "multimodal.tasks.reap_timeouts",
                      "operations.tasks.expire_budgets", "operations.tasks.prune_hub_events",
                      "outcomes.tasks.purge_expired_events", "webhooks.tasks.sweep"]
    ScheduleState.objects.filter(name="expire-autonomy-budgets").update(
        next_run_at=timezone.now() - timedelta(seconds=1))
    assert queue_due() == ["expire-autonomy-budgets"]


def test_every_periodic_job_runs_in_both_modes(settings):
    """One schedule: Celery beat's is built from the worker's, and each entry is a job."""
    assert {
        name: {"task": entry["job"], "schedule": float(entry["every"])}
        for name, entry in settings.AGENT33_SCHEDULE.items()} == settings.CELERY_BEAT_SCHEDULE
    registered = jobs.registered_jobs()
    assert all(entry["job"] in registered for entry in settings.AGENT33_SCHEDULE.values())
    assert {entry["job"] for entry in settings.AGENT33_SCHEDULE.values()} >= {
        "multimodal.tasks.reap_timeouts", "operations.tasks.expire_budgets",
        "agent33.purge_idempotency_records", "agent33.purge_rate_counters",
        "agent33.compact_row_counts", "outcomes.purge_expired_events", "webhooks.sweep"}


def test_a_job_left_running_by_a_vanished_worker_is_queued_again(database_jobs, tenant_a):
    row = queue("tests.echo_context", tenant_id=tenant_a.pk, value=3)
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker_id="gone", hostname="elsewhere", pid=1,
                                   started_at=now, seen_at=now - timedelta(minutes=5))
    WorkerHeartbeat.objects.create(worker_id="alive", hostname="elsewhere", pid=1,
                                   started_at=now, seen_at=now)
    other = queue("tests.echo_context", value=4)
    DBTaskResult.objects.filter(pk=row.pk).update(status="RUNNING", worker_ids=["gone"])
    DBTaskResult.objects.filter(pk=other.pk).update(status="RUNNING", worker_ids=["alive"])
    Worker(worker_id="me")._recover()
    row.refresh_from_db()
    other.refresh_from_db()
    assert row.status == "READY" and "its worker gone stopped" in row.traceback
    assert other.status == "RUNNING"  # its worker is alive: left alone
    assert run_ready_jobs() == ["successful"]
