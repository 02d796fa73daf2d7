"""GET /v1/operations/hub/stream (DESIGN §8.4): the change log, catch-up with Last-Event-ID,
reset, keep-alive, filters, isolation, rollback, capacity; and the live fan-out from the
commit: PostgreSQL LISTEN/NOTIFY, Redis pub/sub, SQLite's poll."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from operations import changelog, services, stream
from operations.models import ProcessEvent, WorkflowRun
from operations.transitions import Origin
from tests.conftest import REDIS_HOST, REDIS_PORT
from tests.factories.operations import AutonomyBudgetFactory, TraceFactory, WorkflowRunFactory

STREAM = "/v1/operations/hub/stream"
HUB = "/v1/operations/hub"
OPERATOR = Origin(actor="token:test", path="api", scopes=frozenset({"admin"}))


def parse(text: str) -> list[dict]:
    """The events of an SSE body: [{"id", "event", "data"}] (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


def body_of(response) -> str:
    return b"".join(response.streaming_content).decode()


_BASE = {"seq": 0}


@pytest.fixture(autouse=True)
def _base(request):
    """The last event id before the test (PostgreSQL's sequence goes on across tests)."""
    if request.node.get_closest_marker("django_db") is not None:
        request.getfixturevalue("db" if not request.node.get_closest_marker(
            "django_db").kwargs.get("transaction") else "transactional_db")
        _BASE["seq"] = _last_given()


def _last_given() -> int:
    """The last event id given, rows rolled back by earlier tests included."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return stream._max_seq()
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value, is_called FROM operations_processevent_commit_seq")
        value, called = cursor.fetchone()
    return max(value if called else value - 1, stream._max_seq())


def catch_up(client, after=None, **params):
    after = _BASE["seq"] if after is None else after
    response = client.get(STREAM, {"last_event_id": str(after), "duration": "0", **params})
    assert response.status_code == 200, response.content if not response.streaming else ""
    assert response["Content-Type"] == "text/event-stream"
    return parse(body_of(response))


def move(run, status):
    with_scope = services.workflow_run_transition  # the record endpoint's service
    return with_scope(run=run, origin=OPERATOR, status=status)


@pytest.fixture
def reader(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:read"])


@pytest.fixture
def scoped(tenant_a):
    from agent33.tenancy.context import tenant_scope

    with tenant_scope(tenant_a):
        yield


# --- the log and the catch-up (inside one test transaction, both databases) -------------------


@pytest.mark.django_db
def test_every_change_is_an_event_in_order_with_the_hub_row(reader, tenant_a, scoped):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="nightly")
    trace = services.trace_create(tenant=tenant_a, task_id="t1")
    move(run, "running")
    move(run, "paused")

    events = catch_up(reader)
    assert [(e["data"]["id"], e["event"]) for e in events] == [
        (run.pk, "process"), (trace.pk, "process"), (run.pk, "process"), (run.pk, "process")]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 4
    # The data is the hub's row as GET /hub lists it (current state).
    listed = {p["id"]: p for p in reader.get(HUB, {"status": "paused"}).json()["processes"]}
    assert events[-1]["data"] == listed[run.pk]
    log = list(ProcessEvent.all_tenants.order_by("seq").values_list(
        "process_id", "state_before", "state_after"))
    assert log == [(run.pk, "", "queued"), (trace.pk, "", "running"),
                   (run.pk, "queued", "running"), (run.pk, "running", "paused")]


@pytest.mark.django_db
def test_catch_up_replays_only_after_the_last_event_id(reader, tenant_a, scoped):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="w")
    first = catch_up(reader)
    move(run, "running")
    later = catch_up(reader, after=first[-1]["id"])
    assert [e["data"]["status"] for e in later] == ["running"]
    # The header works the same as the query parameter.
    response = reader.get(STREAM, {"duration": "0"}, HTTP_LAST_EVENT_ID=first[-1]["id"])
    assert [e["id"] for e in parse(body_of(response))] == [later[0]["id"]]
    # Up to date: nothing to replay.
    assert catch_up(reader, after=later[-1]["id"]) == []


@pytest.mark.django_db
def test_another_tenant_never_sees_the_events(reader, api_client_for, tenant_a, tenant_b,
                                             scoped):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="secret-a")
    move(run, "running")
    other = api_client_for(tenant_b, scopes=["workflows:read"])
    response = other.get(STREAM, {"last_event_id": str(_BASE["seq"]), "duration": "0"})
    text = body_of(response)
    assert parse(text) == [] and run.pk not in text and "secret-a" not in text
    # An operator sees every tenant's.
    operator = api_client_for(None, scopes=["workflows:read"])
    assert {e["data"]["id"] for e in catch_up(operator)} == {run.pk}


@pytest.mark.django_db
def test_filters_include_and_status(reader, tenant_a, scoped):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="w", status="running")
    services.trace_create(tenant=tenant_a)
    move(run, "paused")
    move(run, "running")
    assert {e["data"]["type"] for e in catch_up(reader, include="workflows")} == {"workflow"}
    assert {e["data"]["type"] for e in catch_up(reader, include="traces")} == {"trace"}
    # status=paused: the move into paused and the move out of it (so a client drops the row).
    paused = catch_up(reader, status="paused")
    assert len(paused) == 2
    log = ProcessEvent.all_tenants.filter(seq__in=[int(e["id"]) for e in paused])
    assert sorted((e.state_before, e.state_after) for e in log) == [
        ("paused", "running"), ("running", "paused")]
    bad = reader.get(STREAM, {"include": "nope"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"


@pytest.mark.django_db
def test_a_rolled_back_change_is_no_event(reader, tenant_a, scoped):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="w", status="running")
    before = catch_up(reader)
    with pytest.raises(RuntimeError), transaction.atomic():
        move(run, "paused")
        raise RuntimeError("the caller's transaction fails after the change")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.trace_create(tenant=tenant_a)
        raise RuntimeError("the creation rolls back")
    assert catch_up(reader) == before
    assert WorkflowRun.objects.get(pk=run.pk).status == "running"


@pytest.mark.django_db
def test_reset_beyond_the_window(reader, tenant_a, scoped, settings):
    run = services.workflow_run_create(tenant=tenant_a, workflow_name="w")
    services.workflow_run_create(tenant=tenant_a, workflow_name="w2")
    top = catch_up(reader)[-1]["id"]
    # Older than what the log keeps: reset (with the current id to continue from).
    ProcessEvent.all_tenants.update(created_at=timezone.now() - timedelta(minutes=11))
    events = catch_up(reader)
    assert [(e["event"], e["id"]) for e in events] == [("reset", top)]
    # Pruned away (the newest row stays, it holds the last id given): the id the client has
    # is older than the log: reset too.
    assert changelog.prune_events() == 1
    assert ProcessEvent.all_tenants.count() == 1
    move(run, "running")
    assert [e["event"] for e in catch_up(reader)] == ["reset"]
    assert [e["event"] for e in catch_up(reader, after=top)] == ["process"]
    # An id the log never gave (another database): reset.
    assert [e["event"] for e in catch_up(reader, after=10**12)] == ["reset"]


@pytest.mark.django_db
def test_reset_beyond_a_thousand_events(reader, tenant_a, scoped):
    runs = WorkflowRunFactory.create_batch(3, tenant=tenant_a)
    first = catch_up(reader)[0]["id"]
    changelog.record("workflow", [(tenant_a.pk, runs[0].pk, "queued", "running")] * 1001)
    assert [e["event"] for e in catch_up(reader, after=first)] == ["reset"]


@pytest.mark.django_db
def test_bad_last_event_id_and_duration_are_400(reader):
    for params in ({"last_event_id": "abc"}, {"duration": "-1"}, {"duration": "nan"},
                   {"duration": "99999"}):
        response = reader.get(STREAM, params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid"


@pytest.mark.django_db
def test_scope_and_token_are_required(api_client_for, tenant_a, anonymous_client):
    assert anonymous_client.get(STREAM).status_code == 401
    no_scope = api_client_for(tenant_a, scopes=["outcomes:read"])
    response = no_scope.get(STREAM, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 403 and response.json()["code"] == "missing_scope"


@pytest.mark.django_db
def test_keep_alive_comment(reader, settings):
    settings.AGENT33_HUB_STREAM_KEEPALIVE_SECONDS = 0.05
    response = reader.get(STREAM, {"duration": "0.3"}, HTTP_ACCEPT="text/event-stream")
    text = body_of(response)
    assert text.startswith("retry: 2000\n")
    assert text.count(": keep-alive\n\n") >= 2


@pytest.mark.django_db
def test_streams_per_process_are_bounded(reader, settings):
    settings.AGENT33_HUB_STREAMS_THREADED = 1
    held = reader.get(STREAM, {"duration": "0.2"})
    full = reader.get(STREAM, {"duration": "5"})
    assert full.status_code == 503
    assert full.json()["code"] == "stream_capacity"
    assert full["Retry-After"] == "10"
    body_of(held)  # the held stream ends: its place is free again
    assert stream.broker().open_streams() == 0
    again = reader.get(STREAM, {"duration": "0"})
    assert again.status_code == 200
    body_of(again)


@pytest.mark.django_db
def test_creations_on_other_paths_are_logged(tenant_a, scoped):
    """Factories, the admin and fixtures save rows directly: they are logged too."""
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="active")
    trace = TraceFactory(tenant=tenant_a)
    logged = set(ProcessEvent.all_tenants.values_list("process_type", "process_id"))
    assert {("autonomy_budget", budget.pk), ("trace", trace.pk)} <= logged


# --- live: real commits, the broker's fan-out --------------------------------------------------


class Reader(threading.Thread):
    """Reads a streaming response's chunks in the background until it ends."""

    def __init__(self, response):
        super().__init__(daemon=True)
        self.response = response
        self.text = ""
        self.got = threading.Condition()

    def run(self):
        for chunk in self.response.streaming_content:
            with self.got:
                self.text += chunk.decode()
                self.got.notify_all()

    def wait_for(self, needle: str, timeout: float = 10.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: needle in self.text, timeout)


@pytest.fixture
def fresh_broker(monkeypatch):
    broker = stream.Broker()
    monkeypatch.setattr(stream, "_broker", broker)
    yield broker
    broker.stop()


def _live_round(api_client_for, tenant_a, tenant_b, broker):
    from agent33.tenancy.context import tenant_scope

    reader = api_client_for(tenant_a, scopes=["workflows:read"])
    other = api_client_for(tenant_b, scopes=["workflows:read"])
    mine = Reader(reader.get(STREAM, {"duration": "8"}))
    theirs = Reader(other.get(STREAM, {"duration": "8"}))
    mine.start()
    theirs.start()
    with tenant_scope(tenant_a):
        run = services.workflow_run_create(tenant=tenant_a, workflow_name="live")
        move(run, "running")
    with pytest.raises(RuntimeError), tenant_scope(tenant_a), transaction.atomic():
        move(WorkflowRun.objects.get(pk=run.pk), "paused")
        raise RuntimeError("rolled back")
    with tenant_scope(tenant_a):
        move(WorkflowRun.objects.get(pk=run.pk), "completed")
    assert mine.wait_for('"status":"completed"'), mine.text
    events = parse(mine.text)
    assert [e["data"]["id"] for e in events] == [run.pk] * 3
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # Never the rolled-back pause: the three committed changes and nothing else.
    assert list(ProcessEvent.all_tenants.filter(process_id=run.pk).values_list(
        "state_after", flat=True).order_by("seq")) == ["queued", "running", "completed"]
    # Tenant B's open stream got nothing of A's.
    assert run.pk not in theirs.text and parse(theirs.text) == []
    mine.response.close()
    theirs.response.close()
    return broker


@pytest.mark.django_db(transaction=True)
def test_live_fan_out_on_this_database(api_client_for, tenant_a, tenant_b, fresh_broker,
                                       settings):
    """PostgreSQL: LISTEN/NOTIFY from the commit; SQLite: the broker's poll."""
    settings.AGENT33_HUB_STREAM_POLL_SECONDS = 0.05
    _live_round(api_client_for, tenant_a, tenant_b, fresh_broker)
    assert fresh_broker.mode() in ("postgresql", "poll")


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_live_fan_out_through_redis(api_client_for, tenant_a, tenant_b, fresh_broker,
                                    settings, require_redis):
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/6",
        "KEY_PREFIX": "hub-stream-test",
    }}
    assert fresh_broker.mode() == "redis"
    _live_round(api_client_for, tenant_a, tenant_b, fresh_broker)


@pytest.mark.django_db(transaction=True)
def test_idle_streams_cost_no_query(api_client_for, tenant_a, fresh_broker, settings):
    """Open streams with nothing happening: the broker reads nothing (PostgreSQL waits on
    LISTEN; SQLite polls once per interval per process, never per stream)."""
    settings.AGENT33_HUB_STREAM_POLL_SECONDS = 0.2
    readers = [Reader(api_client_for(tenant_a, scopes=["workflows:read"]).get(
        STREAM, {"duration": "1.2"})) for _ in range(5)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(5)
    if fresh_broker.mode() == "postgresql":
        assert fresh_broker.reads == 1  # once, when the broker started listening
    else:
        assert fresh_broker.reads <= 1.2 / 0.2 + 2  # per poll, not per stream


@pytest.mark.django_db
def test_the_prune_job_is_scheduled(settings):
    assert settings.AGENT33_SCHEDULE["prune-hub-events"] == {
        "job": "operations.tasks.prune_hub_events", "every": 60}


@pytest.mark.django_db
def test_the_staff_page_stream_is_in_the_staff_scope(client, staff_user_factory, tenant_a,
                                                     tenant_b):
    from agent33.tenancy.context import tenant_scope

    with tenant_scope(tenant_a):
        mine = services.workflow_run_create(tenant=tenant_a, workflow_name="granted")
    with tenant_scope(tenant_b):
        theirs = services.workflow_run_create(tenant=tenant_b, workflow_name="not-granted")
    url = "/admin/operations/hub/stream/"
    params = {"last_event_id": str(_BASE["seq"]), "duration": "0"}
    assert client.get(url, params).status_code == 302  # to the login page

    client.force_login(staff_user_factory("granted-a", tenants=[tenant_a]))
    response = client.get(url, params)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    text = body_of(response)
    assert [e["data"]["id"] for e in parse(text)] == [mine.pk]
    assert theirs.pk not in text
    assert client.get(url, {"include": "nope"}).json()["code"] == "invalid"

    client.force_login(staff_user_factory("root", superuser=True))
    assert {e["data"]["id"] for e in parse(body_of(client.get(url, params)))} == {
        mine.pk, theirs.pk}


@pytest.mark.django_db
def test_staff_without_the_hub_permission_get_no_stream(client, tenant_a):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("no-perms", password="x", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/operations/hub/stream/", {"duration": "0"}).status_code == 403
