"""CTRF reports as outcome events: POST /v1/outcomes/ctrf and `manage.py ingest_ctrf`
(DESIGN §7.3, issue 18)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent33.auth.scopes import OUTCOMES_READ, OUTCOMES_WRITE
from operations.models import ImprovementIntake
from outcomes.models import OutcomeEvent
from tests.conftest import make_client

pytestmark = pytest.mark.django_db

URL = "/v1/outcomes/ctrf"
NIGHT = 1_767_225_600_000  # 2026-01-01T00:00:00Z in milliseconds
DAY_MS = 86_400_000


def test(name: str, status: str = "passed", duration: float = 120, **fields) -> dict:
    return {"name": name, "status": status, "duration": duration, **fields}


test.__test__ = False  # a report builder, not a pytest test


def report(tests: list[dict], *, tool: str = "nightly", start: int = NIGHT, **results) -> dict:
    counts = {status: sum(t.get("status") == status for t in tests)
              for status in ("passed", "failed", "skipped", "pending", "other")}
    return {
        "reportFormat": "CTRF",
        "specVersion": "1.0.0",
        "results": {
            "tool": {"name": tool, "version": "1.2.3"},
            "summary": {"tests": len(tests), **counts, "start": start, "stop": start + 60_000},
            "tests": tests,
            **results,
        },
    }


def events(tenant, **filters) -> list[OutcomeEvent]:
    return list(
        OutcomeEvent.all_tenants.filter(tenant=tenant, **filters).order_by("metric_type", "id")
    )


@pytest.fixture
def writer(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=[OUTCOMES_WRITE, OUTCOMES_READ])


def post(client, body, **extra):
    return client.post(URL, body, format="json", **extra)


# --- mapping -------------------------------------------------------------------------------


def test_each_passed_or_failed_test_records_a_success_and_a_latency_event(writer, tenant_a):
    extra = {"metric": "ratio", "value": 1.07, "unit": "ratio", "target": "<= 1.2"}
    body = report(
        [test("auth overhead", duration=1500, extra=extra),
         test("hub scale", "failed", duration=42_000.5)],
        environment={"commit": "9f1c2ab", "branchName": "main", "osPlatform": "linux"},
    )
    response = post(writer, body)
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 4, "domain": "benchmarks.nightly"}

    stored = {(e.metric_type, e.event_type): e for e in events(tenant_a)}
    assert {key: e.value for key, e in stored.items()} == {
        ("success_rate", "auth overhead"): 1.0,
        ("success_rate", "hub scale"): 0.0,
        ("latency_ms", "auth overhead"): 1500.0,
        ("latency_ms", "hub scale"): 42_000.5,
    }
    started = datetime(2026, 1, 1, tzinfo=UTC)
    assert {e.domain for e in stored.values()} == {"benchmarks.nightly"}
    assert {e.occurred_at for e in stored.values()} == {started}
    assert stored[("success_rate", "auth overhead")].metadata == {
        "extra": extra, "commit": "9f1c2ab", "branch": "main",
    }
    assert stored[("latency_ms", "hub scale")].metadata == {"commit": "9f1c2ab", "branch": "main"}

    # The dashboard shows the new domain like any other.
    dashboard = writer.get("/v1/outcomes/dashboard?domain=benchmarks.nightly").json()
    assert dashboard["summary"]["total_events"] == 4
    assert dashboard["summary"]["event_types"] == ["auth overhead", "hub scale"]


def test_skipped_pending_and_other_tests_record_nothing(writer, tenant_a):
    body = report([test("a", "skipped"), test("b", "pending"), test("c", "other"),
                   test("d", "passed")])
    response = post(writer, body)
    assert response.json() == {"created": 2, "domain": "benchmarks.nightly"}
    assert {e.event_type for e in events(tenant_a)} == {"d"}

    only_skipped = report([test("a", "skipped")], tool="empty")
    response = post(writer, only_skipped)
    assert response.status_code == 201
    assert response.json() == {"created": 0, "domain": "benchmarks.empty"}
    assert len(events(tenant_a)) == 2


def test_domain_query_parameter_names_the_domain_and_is_validated(writer, tenant_a):
    response = writer.post(f"{URL}?domain=ci.nightly", report([test("a")]), format="json")
    assert response.json() == {"created": 2, "domain": "ci.nightly"}
    assert {e.domain for e in events(tenant_a)} == {"ci.nightly"}

    for bad, message in (("x" * 201, "At most 200 characters"), ("", "May not be blank")):
        response = writer.post(f"{URL}?domain={bad}", report([test("a")]), format="json")
        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["domain"]
        assert message in response.json()["detail"]
    assert len(events(tenant_a)) == 2


def test_test_names_longer_than_an_event_type_are_cut_with_a_hash(writer, tenant_a):
    prefix = "tests/test_api.py::test_parametrised[" + "x" * 200
    names = [prefix + "one]", prefix + "two]"]
    response = post(writer, report([test(name) for name in names]))
    assert response.status_code == 201, response.content
    successes = events(tenant_a, metric_type="success_rate")
    assert len({e.event_type for e in successes}) == 2
    assert all(len(e.event_type) == 200 for e in successes)
    assert sorted(e.metadata["test_name"] for e in successes) == names


# --- invalid documents ---------------------------------------------------------------------


def _parent(body: dict, path: str):
    """The container holding the last key of a dotted path (digits index lists)."""
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node, int(last) if isinstance(node, list) else last


def _without(path: str):
    def mutate(body: dict) -> None:
        node, key = _parent(body, path)
        del node[key]

    return mutate


def _set(path: str, value):
    def mutate(body: dict) -> None:
        node, key = _parent(body, path)
        node[key] = value

    return mutate


INVALID = [
    (_without("results"), "results", "required"),
    (_set("results", []), "results", "JSON object"),
    (_without("results.tool"), "results.tool", "required"),
    (_set("results.tool.name", "  "), "results.tool.name", "blank"),
    (_set("results.tool.name", 7), "results.tool.name", "string"),
    (_without("results.summary"), "results.summary", "required"),
    (_set("results.summary.passed", "2"), "results.summary.passed", "integer"),
    (_set("results.summary.failed", True), "results.summary.failed", "integer"),
    (_without("results.summary.start"), "results.summary.start", "required"),
    (_set("results.summary.start", 10**20), "results.summary.start", "Out of range"),
    (_set("results.summary.stop", -1), "results.summary.stop", "negative"),
    (_without("results.tests"), "results.tests", "required"),
    (_set("results.tests", {"name": "a"}), "results.tests", "array"),
    (_set("results.tests.1", "a test"), "results.tests[1]", "JSON object"),
    (_without("results.tests.2.name"), "results.tests[2].name", "required"),
    (_set("results.tests.2.name", ""), "results.tests[2].name", "blank"),
    (_set("results.tests.2.name", "a\x00b"), "results.tests[2].name", "NUL"),
    (_set("results.tests.3.status", "ok"), "results.tests[3].status",
     "passed, failed, skipped, pending, other"),
    (_without("results.tests.3.status"), "results.tests[3].status", "required"),
    (_set("results.tests.1.duration", "12"), "results.tests[1].duration", "milliseconds"),
    (_set("results.tests.1.duration", -5), "results.tests[1].duration", "negative"),
    (_set("results.tests.1.duration", 10**400), "results.tests[1].duration", "finite"),
    (_set("results.tests.0.extra", ["figure"]), "results.tests[0].extra", "JSON object"),
    (_set("results.tests.0.extra", {"blob": "x" * 20_000}), "results.tests[0].extra",
     "16384 bytes"),
    (_set("results.environment", {"commit": 12}), "results.environment.commit", "string"),
    (_set("results.environment", "ci"), "results.environment", "JSON object"),
    (_set("reportFormat", "JUnit"), "reportFormat", "CTRF"),
    (_set("specVersion", "1"), "specVersion", "1.0.0"),
]


@pytest.mark.parametrize(("mutate", "path", "message"), INVALID,
                         ids=[f"{path}-{message}" for _, path, message in INVALID])
def test_an_invalid_report_is_a_400_naming_the_path_and_stores_nothing(
    writer, tenant_a, mutate, path, message
):
    body = report([test("a"), test("b", "failed"), test("c"), test("d", "skipped")])
    mutate(body)
    response = post(writer, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid"
    assert list(answer["errors"]) == [path]
    assert answer["detail"].startswith(f"{path}: ")
    assert message in answer["detail"]
    assert events(tenant_a) == []


def test_non_finite_numbers_in_the_body_are_refused_naming_their_path(writer, tenant_a):
    text = json.dumps(report([test("a"), test("b")]))
    text = text.replace('"duration": 120}', '"duration": NaN}', 1)
    response = writer.post(URL, text, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["results.tests[0].duration"]

    body = report([test("a", extra={"value": 1.0})])
    text = json.dumps(body).replace('"value": 1.0', '"value": Infinity')
    response = writer.post(URL, text, content_type="application/json")
    assert list(response.json()["errors"]) == ["results.tests[0].extra"]
    assert events(tenant_a) == []


def test_a_report_that_is_not_an_object_or_not_json_is_a_400(writer):
    response = post(writer, [report([test("a")])])
    assert response.status_code == 400
    assert response.json()["detail"] == "A CTRF report must be a JSON object."
    response = writer.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


# --- size -----------------------------------------------------------------------------------


def test_a_report_of_5000_tests_goes_in_as_one_bulk_write(writer, tenant_a):
    tests = [test(f"case {n:04d}", "failed" if n % 10 == 0 else "passed", duration=n)
             for n in range(5000)]
    with CaptureQueriesContext(connection) as queries:
        response = post(writer, report(tests))
    assert response.status_code == 201, response.content[:300]
    assert response.json()["created"] == 10_000
    assert OutcomeEvent.all_tenants.filter(tenant=tenant_a).count() == 10_000
    assert OutcomeEvent.all_tenants.filter(
        tenant=tenant_a, metric_type="success_rate", value=0
    ).count() == 500
    # One bulk write, not a query per test (SQLite inserts 2,000 events per statement, and
    # the 30,000 rollup rows of 10,000 distinct keys 2,900 per statement).
    assert len(queries) < 50


def test_more_than_5000_recorded_tests_is_refused_whole(writer, tenant_a):
    tests = [test(f"case {n}") for n in range(5001)] + [test("skipped", "skipped")]
    response = post(writer, report(tests))
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["results.tests"]
    assert "At most 5000 passed or failed tests" in response.json()["detail"]
    assert events(tenant_a) == []


# --- access ---------------------------------------------------------------------------------


def test_scopes_and_tokens(api_client_for, tenant_a, operator_client, anonymous_client):
    body = report([test("a")])
    reader = api_client_for(tenant_a, scopes=[OUTCOMES_READ])
    response = post(reader, body)
    assert response.status_code == 403
    assert response.json()["detail"] == "Missing required scope: outcomes:write"
    assert post(anonymous_client, body).status_code == 401
    response = post(operator_client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"
    assert not OutcomeEvent.all_tenants.exists()


def test_events_belong_to_the_token_tenant_and_other_tenants_see_none(
    writer, tenant_a, api_client_for, tenant_b
):
    body = report([test("a", "failed")])
    body["tenant_id"] = "tenant-b"
    body["results"]["tenant_id"] = "tenant-b"
    assert post(writer, body).status_code == 201
    assert len(events(tenant_a)) == 2
    assert events(tenant_b) == []
    reader_b = api_client_for(tenant_b, scopes=[OUTCOMES_READ])
    dashboard = reader_b.get("/v1/outcomes/dashboard").json()
    assert dashboard["summary"]["total_events"] == 0


def test_idempotency_key_replays_instead_of_recording_twice(writer, tenant_a):
    body = report([test("a"), test("b", "failed")])
    first = post(writer, body, HTTP_IDEMPOTENCY_KEY="nightly-2026-01-01")
    again = post(writer, body, HTTP_IDEMPOTENCY_KEY="nightly-2026-01-01")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(events(tenant_a)) == 4
    other = report([test("a")])
    response = post(writer, other, HTTP_IDEMPOTENCY_KEY="nightly-2026-01-01")
    assert response.status_code == 422
    assert len(events(tenant_a)) == 4


# --- the loop: a benchmark that starts failing opens one intake ----------------------------


@pytest.fixture
def post_committed(django_capture_on_commit_callbacks):
    """Post as a committed request: the decline evaluation runs after the commit."""

    def send(client, body):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, body)
        assert response.status_code == 201, response.content
        return response

    return send


def nightly(night: int, *, failing: set[str] = frozenset()) -> dict:
    names = ("auth overhead", "hub scale", "outcomes ingest")
    durations = {"auth overhead": 30_000, "hub scale": 61_000, "outcomes ingest": 45_000}
    return report(
        [test(name, "failed" if name in failing else "passed", durations[name])
         for name in names],
        start=NIGHT + night * DAY_MS,
        environment={"commit": f"c{night}", "branchName": "main"},
    )


def test_a_test_that_passes_four_nights_then_fails_opens_exactly_one_intake(
    writer, tenant_a, post_committed
):
    for night in range(4):
        post_committed(writer, nightly(night))
    assert not ImprovementIntake.all_tenants.filter(tenant=tenant_a).exists()
    for night in (4, 5):
        post_committed(writer, nightly(night, failing={"hub scale"}))
    [intake] = ImprovementIntake.all_tenants.filter(tenant=tenant_a)
    assert intake.title == "success_rate declining: hub scale in benchmarks.nightly"
    assert "test 'hub scale'" in intake.summary
    assert intake.status == "submitted"
    trend = writer.get("/v1/outcomes/trends/success_rate", {
        "domain": "benchmarks.nightly", "event_type": "hub scale"}).json()
    assert trend["event_type"] == "hub scale"
    assert trend["values"] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert trend["direction"] == "declining"


def test_a_failure_anywhere_in_a_long_report_opens_an_intake_naming_the_test(
    writer, tenant_a, post_committed
):
    """More tests than the trend window (20): each test has its own trend, so the first test
    failing opens an intake naming it."""
    names = [f"case {n:02d}" for n in range(30)]
    for night in range(3):
        post_committed(writer, report([test(name) for name in names],
                                      start=NIGHT + night * DAY_MS))
    assert not ImprovementIntake.all_tenants.filter(tenant=tenant_a).exists()
    failing = report([test(name, "failed" if name == "case 00" else "passed")
                      for name in names], start=NIGHT + 3 * DAY_MS)
    post_committed(writer, failing)
    [intake] = ImprovementIntake.all_tenants.filter(tenant=tenant_a)
    assert intake.title == "success_rate declining: case 00 in benchmarks.nightly"


def test_different_durations_within_one_report_never_read_as_a_slowdown(
    writer, tenant_a, post_committed
):
    tests = [test(f"case {n:02d}", duration=10 + 1000 * (n % 7)) for n in range(25)]
    for night in range(3):
        post_committed(writer, report(tests, start=NIGHT + night * DAY_MS))
    assert not ImprovementIntake.all_tenants.filter(tenant=tenant_a).exists()


# --- manage.py ingest_ctrf --------------------------------------------------------------------


def run_command(*args) -> str:
    out = StringIO()
    call_command("ingest_ctrf", *args, stdout=out)
    return out.getvalue()


def test_ingest_ctrf_command_records_a_report_file(tmp_path, tenant_a):
    path = tmp_path / "benchmarks.ctrf.json"
    path.write_text(json.dumps(nightly(0, failing={"hub scale"})))
    out = run_command(str(path), "--tenant", "tenant-a")
    assert "Recorded 6 event(s) for tenant tenant-a in domain benchmarks.nightly." in out
    assert len(events(tenant_a)) == 6
    run_command(str(path), "--tenant", "tenant-a", "--domain", "ci.main")
    assert len(events(tenant_a, domain="ci.main")) == 6


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "No such file"),
        ("{not json", [], "is not valid JSON"),
        ('{"results": {"tool": {}}}', [], "results.tool.name: This field is required."),
        ('{"results": {}}', ["--tenant", "nope"], "Unknown tenant 'nope'"),
    ],
    ids=["missing file", "bad json", "invalid report", "unknown tenant"],
)
def test_ingest_ctrf_command_refuses_bad_input(tmp_path, tenant_a, content, args, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run_command(str(path), *(args or ["--tenant", "tenant-a"]))
    assert events(tenant_a) == []


def test_ingest_ctrf_command_exits_non_zero_with_a_clear_message(tmp_path):
    missing = tmp_path / "absent.json"
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest_ctrf", str(missing), "--tenant", "acme"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"No such file: {missing}" in result.stderr


def test_reports_posted_with_curl_style_bytes_work(writer, tenant_a):
    """What the README's curl sends: the file's bytes as the body."""
    data = json.dumps(nightly(0)).encode()
    response = make_client(writer.plaintext).post(
        URL, data, content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["created"] == 6


def test_openapi_schema_documents_the_route_and_its_errors(client):
    schema = client.get("/v1/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/v1/outcomes/ctrf"]["post"]
    assert "outcomes:write" in json.dumps(operation) or operation["security"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    report_schema = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert report_schema["required"] == ["results"]
    created = operation["responses"]["201"]["content"]["application/json"]["schema"]
    created = schema["components"]["schemas"][created["$ref"].rsplit("/", 1)[1]]
    assert set(created["properties"]) == {"created", "domain"}
    for code in ("400", "401", "403", "413", "422"):
        error = operation["responses"][code]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}
    assert {p["name"] for p in operation["parameters"]} >= {"domain", "Idempotency-Key"}


def test_the_demo_has_nightly_benchmark_reports_with_one_benchmark_failing(
    tenant_a, django_capture_on_commit_callbacks
):
    from agent33.tenancy.context import tenant_scope
    from outcomes import demo

    domain = "benchmarks.agent33-bench"

    def seed() -> None:
        with tenant_scope(tenant_a), django_capture_on_commit_callbacks(execute=True):
            demo.seed_demo(tenant=tenant_a)

    seed()
    stored = OutcomeEvent.all_tenants.filter(tenant=tenant_a, domain=domain)
    assert stored.count() == demo.NIGHTS * len(demo.BENCHMARKS) * 2
    failures = stored.filter(metric_type="success_rate", value=0)
    # A test's identity is its suite path and name.
    assert set(failures.values_list("event_type", flat=True)) == {
        "bench > bench.scale_workers"}
    assert failures.count() == demo.NIGHTS - demo.FAILING_FROM_NIGHT
    assert {e.metadata["branch"] for e in stored} == {"main"}
    intakes = ImprovementIntake.all_tenants.filter(tenant=tenant_a, title__endswith=domain)
    assert [i.title for i in intakes] == [
        f"success_rate declining: bench > bench.scale_workers in {domain}"]

    seed()  # idempotent
    assert stored.count() == demo.NIGHTS * len(demo.BENCHMARKS) * 2
    assert intakes.count() == 1


# --- a test's identity (issue 27) ------------------------------------------------------------


def test_a_test_is_its_suite_path_and_name(writer, tenant_a):
    tests = [test("slow", suite=["api", "search"]), test("slow", suite="web"), test("slow")]
    assert post(writer, report(tests)).status_code == 201
    assert {e.event_type for e in events(tenant_a)} == {"api > search > slow", "web > slow",
                                                        "slow"}


def test_a_slower_test_opens_an_intake_naming_it_whatever_the_report_order(
    writer, tenant_a, post_committed
):
    names = [f"case {n:02d}" for n in range(30)]
    for night in range(5):
        durations = dict.fromkeys(names, 100.0)
        if night >= 3:
            durations["case 17"] = 400.0  # four times slower from the fourth night
        order = names[::-1] if night % 2 else names  # listed in another order each night
        post_committed(writer, report(
            [test(name, duration=durations[name], suite=["api"]) for name in order],
            start=NIGHT + night * DAY_MS))
    [intake] = ImprovementIntake.all_tenants.filter(tenant=tenant_a)
    assert intake.title == "latency_ms declining: api > case 17 in benchmarks.nightly"
    # Opened on the first slow night: 4 runs, previous 100 and 100, current 100 and 400.
    assert "previous average 100, current average 250" in intake.summary
    trend = writer.get("/v1/outcomes/trends/latency_ms", {
        "domain": "benchmarks.nightly", "event_type": "api > case 17"}).json()
    assert trend["values"] == [100.0, 100.0, 100.0, 400.0, 400.0]


def test_trend_by_event_type_needs_a_domain(writer):
    response = writer.get("/v1/outcomes/trends/latency_ms", {"event_type": "api > slow"})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["event_type"]


@pytest.mark.parametrize(("mutate", "path", "message"), [
    # 4,096 characters (the name limit), 16 KB as UTF-8: the name, not `extra`, is too long.
    (_set("results.tests.0.name", "\U0001F600" * 4_096), "results.tests[0].name", "bytes"),
    (_set("results.tests.0.suite", ["é" * 3_000, "é" * 3_000]), "results.tests[0].suite",
     "bytes"),
    (_set("results.tests.0.suite", ["s" * 4_097]), "results.tests[0].suite[0]", "4096"),
    (_set("results.tests.0.suite", 5), "results.tests[0].suite", "array of strings"),
    (_set("results.tests.0.suite", ["api", 5]), "results.tests[0].suite[1]", "string"),
    (_set("results.tests.0.extra", {"blob": "x" * 16_400}), "results.tests[0].extra",
     "got 16411"),
])
def test_a_field_over_its_limit_is_reported_as_itself(writer, tenant_a, mutate, path, message):
    body = report([test("a", extra={"k": 1}), test("b")])
    mutate(body)
    response = post(writer, body)
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [path]
    assert message in response.json()["detail"]
    assert not events(tenant_a)


def test_all_is_a_reserved_domain(writer, outcomes_a, tenant_a):
    response = writer.post(f"{URL}?domain=all", report([test("a")]), format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["domain"]
    assert "reserved" in response.json()["detail"]
    single = outcomes_a.post("/v1/outcomes/events", {
        "domain": " all ", "event_type": "e", "metric_type": "success_rate", "value": 1},
        format="json")
    assert single.status_code == 400 and list(single.json()["errors"]) == ["domain"]
    bulk = outcomes_a.post("/v1/outcomes/events/bulk", {"events": [
        {"domain": "ok", "event_type": "e", "metric_type": "success_rate", "value": 1},
        {"domain": "all", "event_type": "e", "metric_type": "success_rate", "value": 1}]},
        format="json")
    assert bulk.status_code == 400 and list(bulk.json()["errors"]) == ["events.1.domain"]
    assert not events(tenant_a)


def test_an_intake_opened_by_a_decline_shows_its_evidence_on_its_page(
    writer, tenant_a, post_committed, client, staff_user_factory
):
    from django.utils import timezone

    today = int(timezone.now().timestamp() * 1000) - 5 * DAY_MS
    for night in range(5):
        post_committed(writer, report(
            [test("slow", duration=400.0 if night >= 3 else 100.0, suite=["api"]),
             test("fast", duration=10.0, suite=["api"])],
            start=today + night * DAY_MS))
    [intake] = ImprovementIntake.all_tenants.filter(tenant=tenant_a)
    client.force_login(staff_user_factory("evidence", tenants=[tenant_a]))
    page = client.get(f"/admin/operations/improvementintake/{intake.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="evidence-test">api &gt; slow</strong>' in html
    assert 'class="evidence-domain">benchmarks.nightly</strong>' in html
    assert 'class="evidence-previous">100</strong>' in html
    assert 'class="evidence-current">300</strong>' in html
    assert ("/admin/outcomes/dashboard/?tenant=tenant-a&amp;domain=benchmarks.nightly"
            "&amp;metric=latency_ms&amp;event_type=api+%3E+slow") in html
    assert html.count("<tr><td>20") == 5  # five days of the series
    # An intake no decline opened has no evidence.
    other = ImprovementIntake.all_tenants.create(tenant=tenant_a, title="by hand")
    assert "decline-evidence" not in client.get(
        f"/admin/operations/improvementintake/{other.pk}/change/").content.decode()
