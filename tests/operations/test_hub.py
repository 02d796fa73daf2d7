"""GET /v1/operations/hub: defaults, every filter, ordering, limits, operators, query count,
and process sources registered by other apps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from operations.hub import (
    ProcessDetail,
    ProcessRow,
    register_process_source,
    registered_sources,
    unregister_process_source,
)
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

HUB = "/v1/operations/hub"


@pytest.fixture
def reader(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:read"])


def ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


@pytest.fixture
def mixed(tenant_a):
    """One active and one finished process of each type, plus an old active one."""
    return {
        "trace": TraceFactory(tenant=tenant_a, task_id="t-active", started_at=ago(minutes=1)),
        "trace_done": TraceFactory(tenant=tenant_a, status="completed", started_at=ago(minutes=2)),
        "budget": AutonomyBudgetFactory(tenant=tenant_a, task_id="b-active", status="active",
                                        started_at=ago(minutes=3)),
        "budget_done": AutonomyBudgetFactory(tenant=tenant_a, status="expired",
                                             started_at=ago(minutes=4)),
        "intake": ImprovementIntakeFactory(tenant=tenant_a, title="i-active", status="analyzing",
                                           started_at=ago(minutes=5)),
        "intake_done": ImprovementIntakeFactory(tenant=tenant_a, status="rejected",
                                                started_at=ago(minutes=6)),
        "run": WorkflowRunFactory(tenant=tenant_a, workflow_name="w-active", status="running",
                                  started_at=ago(minutes=7)),
        "run_done": WorkflowRunFactory(tenant=tenant_a, status="failed",
                                       started_at=ago(minutes=8)),
        "old_run": WorkflowRunFactory(tenant=tenant_a, status="running", started_at=ago(days=2)),
    }


def test_default_hub_lists_unfinished_processes_of_the_last_day_newest_first(reader, mixed):
    response = reader.get(HUB)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"timestamp", "active_count", "processes"}
    ids = [p["id"] for p in body["processes"]]
    assert ids == [mixed[k].pk for k in ("trace", "budget", "intake", "run")]
    assert body["active_count"] == 4
    by_type = {p["type"]: p for p in body["processes"]}
    assert set(by_type) == {"trace", "autonomy_budget", "improvement_intake", "workflow"}
    assert by_type["trace"]["name"] == "t-active"
    assert by_type["autonomy_budget"]["name"] == "b-active"
    assert by_type["improvement_intake"]["name"] == "i-active"
    assert by_type["workflow"]["name"] == "w-active"
    for process in body["processes"]:
        assert set(process) == {"id", "type", "status", "started_at", "name", "metadata",
                                "allowed_actions"}
        assert process["metadata"]["tenant_id"] == "tenant-a"
        assert process["started_at"].endswith("Z")
    assert set(by_type["trace"]["metadata"]) == {"tenant_id", "agent_id", "session_id", "run_id"}
    assert set(by_type["autonomy_budget"]["metadata"]) == {
        "tenant_id", "agent_id", "approved_by", "expires_at"
    }
    assert set(by_type["improvement_intake"]["metadata"]) == {
        "tenant_id", "research_type", "urgency", "source"
    }
    assert set(by_type["workflow"]["metadata"]) == {
        "tenant_id", "trigger_type", "duration_ms", "error", "job_id"
    }
    assert by_type["trace"]["allowed_actions"] == ["cancel"]
    assert by_type["autonomy_budget"]["allowed_actions"] == ["pause", "cancel"]
    assert by_type["improvement_intake"]["allowed_actions"] == []
    assert by_type["workflow"]["allowed_actions"] == ["pause", "cancel"]


def test_include_selects_types(reader, mixed):
    body = reader.get(HUB, {"include": "workflows,traces"}).json()
    assert {p["type"] for p in body["processes"]} == {"workflow", "trace"}
    body = reader.get(HUB, {"include": " Budgets "}).json()
    assert [p["type"] for p in body["processes"]] == ["autonomy_budget"]


def test_blank_include_means_every_type(reader, mixed):
    assert len(reader.get(HUB, {"include": " , "}).json()["processes"]) == 4


def test_include_multimodal_is_accepted_without_a_registered_source(reader, mixed):
    response = reader.get(HUB, {"include": "multimodal"})
    assert response.status_code == 200
    assert all(p["type"] == "multimodal_request" for p in response.json()["processes"])


def test_unknown_include_is_400(reader):
    response = reader.get(HUB, {"include": "traces,bogus,zzz"})
    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid include values: bogus, zzz"


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01T00:00:00", "12", "2024-01-01T25:00"])
def test_bad_since_is_400(reader, since):
    response = reader.get(HUB, {"since": since})
    assert response.status_code == 400
    assert "since" in response.json()["detail"]
    assert response.json()["errors"] == {"since": [response.json()["detail"]]}


def test_since_filters_on_started_at(reader, mixed):
    since = (timezone.now() - timedelta(days=3)).isoformat()
    ids = [p["id"] for p in reader.get(HUB, {"since": since}).json()["processes"]]
    assert mixed["old_run"].pk in ids
    since = (timezone.now() - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC
    ids = [p["id"] for p in reader.get(HUB, {"since": since}).json()["processes"]]
    assert ids == [mixed["trace"].pk, mixed["budget"].pk]
    # An unescaped "+00:00" offset arrives as " 00:00"; it still parses.
    raw = (timezone.now() - timedelta(minutes=4)).replace(microsecond=0).isoformat()
    response = reader.get(f"{HUB}?since={raw}")
    assert response.status_code == 200
    assert len(response.json()["processes"]) == 2


def test_status_filter_spans_types_and_may_list_finished(reader, mixed):
    body = reader.get(HUB, {"status": "running"}).json()
    assert [p["id"] for p in body["processes"]] == [mixed["trace"].pk, mixed["run"].pk]
    body = reader.get(HUB, {"status": "failed"}).json()
    assert [p["id"] for p in body["processes"]] == [mixed["run_done"].pk]
    assert body["active_count"] == 0
    assert body["processes"][0]["allowed_actions"] == []
    body = reader.get(HUB, {"status": "expired", "include": "traces"}).json()
    assert body["processes"] == []


def test_unknown_status_is_400(reader):
    response = reader.get(HUB, {"status": "sleeping"})
    assert response.status_code == 400
    assert response.json()["errors"].keys() == {"status"}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
def test_limit_out_of_range_is_400(reader, limit):
    response = reader.get(HUB, {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["detail"]


def test_limit_keeps_the_newest_across_types(reader, tenant_a):
    now = timezone.now()
    expected = []
    for minute in range(12):
        factory = [TraceFactory, WorkflowRunFactory, AutonomyBudgetFactory][minute % 3]
        extra = {"status": "active"} if factory is AutonomyBudgetFactory else {}
        expected.append(factory(tenant=tenant_a, started_at=now - timedelta(minutes=minute),
                                **extra).pk)
    body = reader.get(HUB, {"limit": "5"}).json()
    assert [p["id"] for p in body["processes"]] == expected[:5]
    assert body["active_count"] == 5
    body = reader.get(HUB, {"limit": "100"}).json()
    assert [p["id"] for p in body["processes"]] == expected


def test_default_limit_is_100(reader, tenant_a):
    WorkflowRunFactory.create_batch(105, tenant=tenant_a)
    assert len(reader.get(HUB).json()["processes"]) == 100


def test_tenants_see_only_their_processes_and_operators_see_all(
    api_client_for, reader, tenant_a, tenant_b
):
    mine = WorkflowRunFactory(tenant=tenant_a)
    theirs = WorkflowRunFactory(tenant=tenant_b)
    ids = {p["id"] for p in reader.get(HUB).json()["processes"]}
    assert ids == {mine.pk}
    operator = api_client_for(None, scopes=["workflows:read"])
    body = operator.get(HUB).json()
    assert {p["id"] for p in body["processes"]} == {mine.pk, theirs.pk}
    assert {p["metadata"]["tenant_id"] for p in body["processes"]} == {"tenant-a", "tenant-b"}


def test_hub_query_count_is_fixed(reader, tenant_a, django_assert_max_num_queries):
    TraceFactory(tenant=tenant_a)
    with django_assert_max_num_queries(8) as small:
        reader.get(HUB)
    for _ in range(20):
        TraceFactory(tenant=tenant_a)
        AutonomyBudgetFactory(tenant=tenant_a, status="active")
        ImprovementIntakeFactory(tenant=tenant_a)
        WorkflowRunFactory(tenant=tenant_a)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(reader.get(HUB).json()["processes"]) == 81
    # One query per included source, and none for a type that can't have the status.
    with django_assert_max_num_queries(len(small.captured_queries) - 3):
        reader.get(HUB, {"include": "workflows"})
    with django_assert_max_num_queries(len(small.captured_queries) - 3):
        reader.get(HUB, {"status": "paused"})


class FakeMultimodalSource:
    """What the multimodal app will register; here without any model."""

    type_name = "multimodal_request"
    include_key = "multimodal"
    id_prefix = "mmreq-"
    statuses = ("pending", "processing", "completed", "failed", "cancelled")
    active_statuses = ("pending", "processing")
    actions = ("cancel",)

    def __init__(self, tenant_id):
        self.row = ProcessRow(
            id="mmreq-" + "a" * 32, type=self.type_name, status="processing",
            started_at=timezone.now(), name="speech_to_text",
            metadata={"tenant_id": tenant_id, "modality": "speech_to_text"},
            allowed_actions=("cancel",),
        )
        self.state = "processing"

    def list(self, *, scope, since, statuses, limit):
        return [self.row] if self.row.status in statuses else []

    def get(self, process_id):
        if process_id != self.row.id:
            return None
        return ProcessDetail(row=self.row, tenant_id=self.row.metadata["tenant_id"])

    def control(self, process_id, *, action, reason, origin):
        self.state = "cancelled"
        return self.get(process_id)

    def allowed_actions(self, status):
        return ("cancel",) if status in self.active_statuses else ()


@pytest.fixture
def fake_multimodal(tenant_a):
    """Stands in for the multimodal app's source, restoring the real one (if any) after."""
    source = FakeMultimodalSource(tenant_a.slug)
    real = [s for s in registered_sources() if s.type_name == source.type_name]
    register_process_source(source)
    yield source
    unregister_process_source(source.type_name)
    for original in real:
        register_process_source(original)


def test_registered_sources_join_the_hub_detail_and_controls(reader, api_client_for, tenant_a,
                                                             fake_multimodal):
    WorkflowRunFactory(tenant=tenant_a)
    body = reader.get(HUB, {"include": "multimodal"}).json()
    assert [p["type"] for p in body["processes"]] == ["multimodal_request"]
    assert body["processes"][0]["name"] == "speech_to_text"
    assert len(reader.get(HUB).json()["processes"]) == 2
    assert reader.get(HUB, {"status": "pending"}).status_code == 200

    process_id = fake_multimodal.row.id
    detail = reader.get(f"/v1/operations/processes/{process_id}").json()
    assert detail["type"] == "multimodal_request" and detail["control_history"] == []
    executor = api_client_for(tenant_a, scopes=["workflows:execute"])
    response = executor.post(f"/v1/operations/processes/{process_id}/control",
                             {"action": "cancel", "reason": "stuck"}, format="json")
    assert response.status_code == 200 and fake_multimodal.state == "cancelled"
    # The history is written by the status change a real source's service makes
    # (operations.transitions); this stand-in changes no row, so it has none.
    assert response.json()["history"] == []


def test_registering_a_clashing_prefix_fails(fake_multimodal):
    class Clash(FakeMultimodalSource):
        type_name = "other"
        id_prefix = "wfrun-"

    with pytest.raises(ValueError, match="wfrun-"):
        register_process_source(Clash("tenant-a"))
    with pytest.raises(TypeError):
        register_process_source(object())
