"""Batches (DESIGN §8.4): POST /v1/operations/batches (dry run, 202), progress, cancel, list;
each item through the one status change (path batch, the batch's reason and actor); limits;
isolation. Jobs go to the database queue and run as the worker runs them
(`run_ready_jobs`); tests/jobs/test_batch_worker.py runs one through a real worker process."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agent33.jobs.worker import run_ready_jobs
from agent33.tenancy.context import tenant_scope
from multimodal.models import MultimodalRequest
from operations import batches
from operations.models import Batch, StatusChange, WorkflowRun
from operations.signals import batch_completed
from tests.factories.multimodal import MultimodalRequestFactory
from tests.factories.operations import TraceFactory, WorkflowRunFactory

pytestmark = pytest.mark.django_db

URL = "/v1/operations/batches"


@pytest.fixture
def executor(api_client_for, tenant_a, database_jobs):
    return api_client_for(tenant_a, scopes=["workflows:execute", "workflows:read"],
                          name="ops-console")


def create(client, action="pause", filter=None, **extra):
    body = {"action": action, "filter": filter or {"include": "workflows"}, **extra}
    return client.post(URL, body, format="json")


def runs(tenant, n, status="running", **fields):
    return [WorkflowRunFactory(tenant=tenant, status=status, **fields).pk for _ in range(n)]


def statuses(pks):
    return sorted(WorkflowRun.all_tenants.filter(pk__in=pks).values_list("status", flat=True))


def test_dry_run_counts_exactly_what_the_hub_filter_and_the_action_select(executor, tenant_a):
    running = runs(tenant_a, 7)
    runs(tenant_a, 3, status="paused")  # pause does not start from paused
    runs(tenant_a, 2, status="completed")  # finished: not in the hub's default view
    old = runs(tenant_a, 4, started_at=timezone.now() - timedelta(days=3))  # before `since`
    TraceFactory(tenant=tenant_a, status="running")  # traces have no pause

    def matched(action="pause", **filter):
        response = create(executor, action, filter=filter or {"include": ""}, dry_run=True)
        assert response.status_code == 200, response.content
        return response.json()["matched"]

    assert matched() == 7
    assert matched(include="workflows") == 7
    assert matched(include=["workflows", "traces"]) == 7
    assert matched(include="traces") == 0
    assert matched(action="resume") == 3
    assert matched(action="cancel") == 8  # 7 running workflows + 1 running trace
    assert matched(since=(timezone.now() - timedelta(days=5)).isoformat()) == 11
    assert matched(ids=[*running[:2], *old[:1]]) == 3  # with ids, no 24-hour default
    assert matched(status="paused") == 0
    assert Batch.all_tenants.count() == 0  # a dry run makes nothing
    assert statuses(running) == ["running"] * 7


def test_a_batch_pauses_every_match_with_its_history_and_ends_completed(executor, tenant_a):
    pks = runs(tenant_a, 5)
    response = create(executor, reason="maintenance window")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"].startswith("batch-")
    assert (body["state"], body["matched"], body["done"]) == ("queued", 5, 0)

    run_ready_jobs()

    got = executor.get(f"{URL}/{body['id']}").json()
    assert (got["state"], got["matched"], got["done"], got["skipped"], got["failed"]) == (
        "completed", 5, 5, 0, 0)
    assert got["errors"] == [] and got["finished_at"] and got["started_at"]
    assert statuses(pks) == ["paused"] * 5
    history = StatusChange.all_tenants.filter(process_id__in=pks)
    assert history.count() == 5
    for row in history:
        assert (row.path, row.reason, row.cause, row.action) == (
            "batch", "maintenance window", "operator", "pause")
        assert row.actor == f"token:{executor.token.display_prefix}"
        assert row.actor_name == "ops-console"


def test_items_that_moved_since_the_snapshot_are_skipped_not_failed(executor, tenant_a):
    pks = runs(tenant_a, 4)
    batch_id = create(executor).json()["id"]
    WorkflowRun.all_tenants.filter(pk=pks[0]).update(status="completed")
    WorkflowRun.all_tenants.filter(pk=pks[1]).delete()
    run_ready_jobs()
    got = executor.get(f"{URL}/{batch_id}").json()
    assert (got["state"], got["done"], got["skipped"], got["failed"]) == ("completed", 2, 2, 0)
    assert got["errors"] == []
    assert not StatusChange.all_tenants.filter(process_id__in=pks[:2]).exists()


def test_multimodal_requests_cancel_through_their_api_cancel(executor, tenant_a):
    pending = MultimodalRequestFactory(tenant=tenant_a).pk
    done = MultimodalRequestFactory(tenant=tenant_a, state="completed").pk
    response = create(executor, "cancel", filter={"include": "multimodal"}, reason="outage")
    assert response.json()["matched"] == 1
    run_ready_jobs()
    cancelled = MultimodalRequest.all_tenants.get(pk=pending)
    assert cancelled.state == "cancelled"
    assert cancelled.cancel_reason == "outage"
    assert MultimodalRequest.all_tenants.get(pk=done).state == "completed"
    change = StatusChange.all_tenants.get(process_id=pending)
    assert (change.path, change.reason) == ("batch", "outage")


def test_over_the_item_limit_is_batch_too_large(executor, tenant_a, monkeypatch):
    monkeypatch.setattr(batches, "MAX_BATCH_ITEMS", 5)
    runs(tenant_a, 6)
    response = create(executor)
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    # The dry run still counts exactly, beyond the limit.
    assert create(executor, dry_run=True).json() == {"matched": 6}
    assert Batch.all_tenants.count() == 0


def test_a_fourth_active_batch_is_too_many(executor, tenant_a):
    runs(tenant_a, 2)
    made = [create(executor) for _ in range(3)]
    assert [r.status_code for r in made] == [202, 202, 202]
    fourth = create(executor)
    assert fourth.status_code == 429
    assert fourth.json()["code"] == "too_many_batches"
    assert fourth.headers["Retry-After"]
    assert executor.post(f"{URL}/{made[0].json()['id']}/cancel").status_code == 200
    assert create(executor).status_code == 202


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_cannot_pass_the_limit(require_postgres, api_client_for, tenant_a,
                                                  database_jobs):
    runs(tenant_a, 2)
    clients = [api_client_for(tenant_a, scopes=["workflows:execute"]) for _ in range(6)]
    barrier = threading.Barrier(len(clients))
    codes: list[int] = []

    def send(client):
        try:
            barrier.wait()
            codes.append(create(client).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202, 202, 202, 429, 429, 429]
    assert Batch.all_tenants.filter(tenant=tenant_a).count() == 3


def test_read_scope_cannot_create_or_cancel(api_client_for, tenant_a, executor):
    reader = api_client_for(tenant_a, scopes=["workflows:read"])
    runs(tenant_a, 1)
    for body in ({"action": "pause"}, {"action": "pause", "dry_run": True}):
        response = reader.post(URL, body, format="json")
        assert response.status_code == 403
        assert response.json()["code"] == "missing_scope"
    batch_id = create(executor).json()["id"]
    response = reader.post(f"{URL}/{batch_id}/cancel")
    assert (response.status_code, response.json()["code"]) == (403, "missing_scope")
    assert reader.get(f"{URL}/{batch_id}").status_code == 200


def test_another_tenants_batch_cannot_touch_or_see_mine(executor, api_client_for, tenant_a,
                                                        tenant_b):
    mine = runs(tenant_a, 3)
    other = api_client_for(tenant_b, scopes=["workflows:execute", "workflows:read"])
    batch_id = create(executor).json()["id"]
    assert other.get(f"{URL}/{batch_id}").status_code == 404
    assert other.post(f"{URL}/{batch_id}/cancel").status_code == 404
    assert batch_id not in other.get(URL).content.decode()
    # B names A's processes: they match nothing for B, and B's batch never moves them.
    response = create(other, filter={"ids": mine})
    assert response.json()["matched"] == 0
    run_ready_jobs()
    assert statuses(mine) == ["paused"] * 3  # A's own batch paused them
    assert not StatusChange.all_tenants.filter(process_id__in=mine, tenant=tenant_b).exists()
    assert Batch.all_tenants.get(pk=batch_id).state == "completed"


def test_cancel_mid_batch_stops_between_chunks(executor, tenant_a, monkeypatch):
    monkeypatch.setattr(batches, "CHUNK_SIZE", 2)
    pks = runs(tenant_a, 6)
    batch_id = create(executor).json()["id"]
    real_apply = batches._apply_chunk
    calls = []

    def apply_then_cancel(batch, chunk, origin):
        counts = real_apply(batch, chunk, origin)
        calls.append(chunk)
        if len(calls) == 1:  # the operator cancels while the first chunk is applied
            assert executor.post(f"{URL}/{batch_id}/cancel").json()["state"] == "cancelled"
        return counts

    monkeypatch.setattr(batches, "_apply_chunk", apply_then_cancel)
    run_ready_jobs()
    got = executor.get(f"{URL}/{batch_id}").json()
    assert (got["state"], got["done"]) == ("cancelled", 2)
    assert len(calls) == 1
    assert statuses(pks) == ["paused"] * 2 + ["running"] * 4
    again = executor.post(f"{URL}/{batch_id}/cancel")
    assert (again.status_code, again.json()["state"]) == (200, "cancelled")


def test_a_finished_batch_cannot_be_cancelled(executor, tenant_a):
    runs(tenant_a, 1)
    batch_id = create(executor).json()["id"]
    run_ready_jobs()
    response = executor.post(f"{URL}/{batch_id}/cancel")
    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")


def test_a_resumed_batch_applies_nothing_twice(executor, tenant_a, monkeypatch):
    """A worker killed after the first chunk committed: the batch is still `running` with
    its position; the next try resumes there."""
    monkeypatch.setattr(batches, "CHUNK_SIZE", 2)
    pks = runs(tenant_a, 5)
    batch_id = create(executor).json()["id"]
    real_apply = batches._apply_chunk

    class Killed(BaseException):  # not an Exception: the job does not handle it, like a kill
        pass

    calls = []

    def die_on_second(batch, chunk, origin):
        calls.append(chunk)
        if len(calls) == 2:
            raise Killed
        return real_apply(batch, chunk, origin)

    monkeypatch.setattr(batches, "_apply_chunk", die_on_second)
    with tenant_scope(tenant_a), pytest.raises(Killed):
        batches.batch_run(batch_id)
    half = Batch.all_tenants.get(pk=batch_id)
    assert (half.state, half.position, half.done) == ("running", 2, 2)
    monkeypatch.setattr(batches, "_apply_chunk", real_apply)
    with tenant_scope(tenant_a):
        assert batches.batch_run(batch_id) == "completed"
    done = Batch.all_tenants.get(pk=batch_id)
    assert (done.done, done.skipped, done.position) == (5, 0, 5)
    assert StatusChange.all_tenants.filter(process_id__in=pks).count() == 5


def test_batch_completed_is_sent_once_after_commit(executor, tenant_a,
                                                   django_capture_on_commit_callbacks):
    runs(tenant_a, 2)
    seen = []

    def listener(sender, batch, **kwargs):
        seen.append((batch.pk, batch.state, batch.done))

    batch_completed.connect(listener)
    try:
        batch_id = create(executor).json()["id"]
        with django_capture_on_commit_callbacks(execute=True):
            run_ready_jobs()
            run_ready_jobs()
        assert seen == [(batch_id, "completed", 2)]
        cancelled = create(executor).json()["id"]
        with django_capture_on_commit_callbacks(execute=True):
            executor.post(f"{URL}/{cancelled}/cancel")
            executor.post(f"{URL}/{cancelled}/cancel")
            run_ready_jobs()
        assert seen[1:] == [(cancelled, "cancelled", 0)]
    finally:
        batch_completed.disconnect(listener)


def test_list_is_newest_first_and_paginated(executor, tenant_a):
    runs(tenant_a, 1)
    ids = [create(executor).json()["id"] for _ in range(3)]
    first = executor.get(URL, {"limit": 2})
    assert [b["id"] for b in first.json()] == ids[::-1][:2]
    assert 'rel="next"' in first.headers["Link"]


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "explode"}, "action"),
    ({"action": "pause", "filter": "workflows"}, "filter"),
    ({"action": "pause", "filter": {"colour": "red"}}, "filter"),
    ({"action": "pause", "filter": {"include": "nope"}}, "filter.include"),
    ({"action": "pause", "filter": {"status": "sleepy"}}, "filter.status"),
    ({"action": "pause", "filter": {"since": "yesterday"}}, "filter.since"),
    ({"action": "pause", "filter": {"ids": "wfrun-1"}}, "filter.ids"),
    ({"action": "pause", "filter": {"ids": [1]}}, "filter.ids"),
    ({"action": "pause", "dry_run": "yes"}, "dry_run"),
    ({"action": "pause", "reason": 5}, "reason"),
    ({"action": "pause", "reason": "x" * 2001}, "reason"),
])
def test_bad_input_is_a_400_naming_the_field(executor, body, field):
    response = executor.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json()), response.json()


def test_operator_tokens_cannot_create_a_batch(operator_client):
    response = create(operator_client)
    assert (response.status_code, response.json()["code"]) == (400, "tenant_required")


# --- the hub page's endpoint (/admin/operations/hub/batches/) -----------------------------

STAFF_URL = "/admin/operations/hub/batches/"


def staff_post(client, body):
    return client.post(STAFF_URL, body, content_type="application/json")


def test_staff_batches_run_in_their_tenant_with_the_control_permission(
        client, staff_user_factory, tenant_a, tenant_b, database_jobs):
    from django.contrib.auth.models import Permission

    mine = runs(tenant_a, 2)
    theirs = runs(tenant_b, 2)
    user = staff_user_factory("batcher", tenants=[tenant_a])
    client.force_login(user)
    counts = client.get(STAFF_URL, {"counts": "1", "include": "workflows"}).json()
    assert counts == {"pause": 2, "resume": 0, "cancel": 2}
    made = staff_post(client, {"action": "pause", "filter": {"ids": mine + theirs},
                               "reason": "staff"})
    assert made.status_code == 202, made.content
    assert made.json()["matched"] == 2 and made.json()["tenant_id"] == "tenant-a"
    run_ready_jobs()
    assert statuses(mine) == ["paused"] * 2 and statuses(theirs) == ["running"] * 2
    assert client.get(STAFF_URL, {"id": made.json()["id"]}).json()["state"] == "completed"
    assert {row.actor for row in StatusChange.all_tenants.filter(process_id__in=mine)} == {
        "user:batcher"}

    # Tenant B's batch is not found for a staff member of tenant A only.
    other = Batch.all_tenants.create(tenant=tenant_b, action="pause", created_by="x")
    assert client.get(STAFF_URL, {"id": other.pk}).status_code == 404
    assert staff_post(client, {"cancel": other.pk}).status_code == 404
    assert staff_post(client, {"action": "pause", "tenant": "tenant-b"}).json()["code"] == (
        "tenant_required")

    # Without the control permission: counts and progress are readable, batches are not made.
    user.user_permissions.remove(Permission.objects.get(codename="control_process"))
    client.force_login(type(user).objects.get(pk=user.pk))
    refused = staff_post(client, {"action": "pause", "filter": {"include": "workflows"}})
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")


def test_staff_of_several_tenants_name_the_tenant(client, staff_user_factory, tenant_a,
                                                   tenant_b, database_jobs):
    runs(tenant_b, 3)
    client.force_login(staff_user_factory("two-tenants", tenants=[tenant_a, tenant_b]))
    assert client.get(STAFF_URL).json()["tenants"] == ["tenant-a", "tenant-b"]
    unnamed = staff_post(client, {"action": "pause", "dry_run": True})
    assert (unnamed.status_code, unnamed.json()["code"]) == (400, "tenant_required")
    named = staff_post(client, {"action": "pause", "dry_run": True, "tenant": "tenant-b"})
    assert named.json() == {"matched": 3}
