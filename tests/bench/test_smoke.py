"""The benchmark smoke job (`make bench-smoke`, bench/smoke.py): its report is a valid CTRF
document that the control plane ingests, a missed target is a failed test but not a failed
run, and only a broken harness makes it exit non-zero."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from bench import report as ctrf
from bench import smoke
from bench.common import Figure

ROOT = Path(__file__).resolve().parents[2]

# The CTRF schema's required fields and types, written out from the public specification
# (reportFormat, specVersion, results.tool/summary/tests), with its closed property lists, plus
# this project's `extra`: the deciding figure as {metric, value, unit, target} and every figure
# in that shape under `figures`.
FIGURE = {
    "type": "object",
    "required": ["metric", "value", "unit", "target"],
    "properties": {
        "metric": {"type": "string", "minLength": 1},
        "value": {"type": ["number", "null"]},
        "unit": {"type": "string", "minLength": 1},
        "target": {"type": ["string", "null"], "pattern": r"^(<=|<|>=|>|==) -?[0-9.]+$"},
    },
}
EXTRA = {
    **FIGURE,
    "properties": {**FIGURE["properties"], "figures": {"type": "array", "items": {
        **FIGURE, "additionalProperties": False}, "minItems": 2}},
    "additionalProperties": False,
}
STATUSES = ["passed", "failed", "skipped", "pending", "other"]
INTEGER = {"type": "integer"}
TEST_FIELDS = [
    "id", "name", "status", "duration", "start", "stop", "suite", "message", "trace", "snippet",
    "ai", "line", "rawStatus", "tags", "labels", "type", "filePath", "retries",
    "retryAttempts", "flaky", "stdout", "stderr", "threadId", "browser", "device",
    "screenshot", "attachments", "parameters", "steps", "insights", "extra",
]
ENVIRONMENT_FIELDS = [
    "reportName", "appName", "appVersion", "buildId", "buildName", "buildNumber", "buildUrl",
    "repositoryName", "repositoryUrl", "commit", "branchName", "osPlatform", "osRelease",
    "osVersion", "testEnvironment", "healthy", "extra",
]
CTRF_SCHEMA = {
    "type": "object",
    "required": ["reportFormat", "specVersion", "results"],
    "properties": {
        "reportFormat": {"const": "CTRF"},
        "specVersion": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
        "reportId": {"type": "string", "format": "uuid"},
        "timestamp": {"type": "string"},
        "generatedBy": {"type": "string"},
        "extra": {"type": "object"},
        "results": {
            "type": "object",
            "required": ["tool", "summary", "tests"],
            "properties": {
                "tool": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1},
                                   "version": {"type": "string"}, "extra": {"type": "object"}},
                    "additionalProperties": False,
                },
                "summary": {
                    "type": "object",
                    "required": ["tests", *STATUSES, "start", "stop"],
                    "properties": {
                        **dict.fromkeys(["tests", *STATUSES, "flaky", "suites", "start",
                                         "stop", "duration"], INTEGER),
                        "extra": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
                "tests": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "status", "duration"],
                    "properties": {
                        **{name: {} for name in TEST_FIELDS},
                        "name": {"type": "string", "minLength": 1},
                        "status": {"enum": STATUSES},
                        "duration": INTEGER,
                        "start": INTEGER,
                        "stop": INTEGER,
                        "suite": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        "message": {"type": "string"},
                        "rawStatus": {"type": "string"},
                        "extra": EXTRA,
                    },
                    "additionalProperties": False,
                }},
                "environment": {
                    "type": "object",
                    "properties": {name: {} for name in ENVIRONMENT_FIELDS},
                    "additionalProperties": False,
                },
                "extra": {"type": "object"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


def assert_valid_smoke_report(document: dict) -> None:
    errors = sorted(Draft7Validator(CTRF_SCHEMA).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    results = document["results"]
    tests, summary = results["tests"], results["summary"]
    assert summary["tests"] == len(tests)
    for status in STATUSES:
        assert summary[status] == sum(t["status"] == status for t in tests), status
    assert summary["start"] <= summary["stop"]
    assert results["tool"]["name"] == ctrf.TOOL_NAME
    for test in tests:
        figures = test.get("extra", {}).get("figures") or [test.get("extra")]
        judged = [f for f in figures if f and f["target"] is not None]
        if test["status"] == "passed":
            assert judged, f"{test['name']} passed without a target"
            assert all(Figure(**f).met for f in judged), test["name"]
    json.dumps(document, allow_nan=False)  # strict JSON: what the ingest accepts


def results_of_every_kind() -> list[ctrf.TestResult]:
    return [
        ctrf.TestResult("golden.trend_maths", "golden", "passed", 1_000, 1_250,
                        [Figure("series right", 7, "series", "== 7")]),
        ctrf.TestResult("bench.hub_scale", "bench", "failed", 1_250, 31_000,
                        [Figure("hub default ratio", 1.2, "ratio", "<= 2.0"),
                         Figure("control ratio", 4.8, "ratio", "<= 3.0"),
                         Figure("control p50", 3.1, "ms")], "missed: control ratio"),
        ctrf.TestResult("bench.auth_overhead", "bench", "failed", 31_000, 31_100,
                        [Figure("ratio", math.inf, "ratio", ">= 1.2")], "missed: ratio"),
        ctrf.TestResult("golden.ocr", "golden", "failed", 31_100, 31_200, [],
                        "TypeError: a bug", error=True),
        ctrf.TestResult("bench.scale_workers", "bench", "skipped", 31_200, 31_200, [],
                        "the time budget of 600 s was spent"),
    ]


def test_the_report_is_a_valid_ctrf_document_with_figures_in_extra():
    document = ctrf.ctrf_document(results_of_every_kind(), start_ms=1_000, stop_ms=31_200,
                                  environment={"commit": "abc123", "branchName": "main"})
    assert_valid_smoke_report(document)
    tests = {t["name"]: t for t in document["results"]["tests"]}
    hub = tests["bench.hub_scale"]
    # The figure that decides the test is the headline: here the missed one.
    assert {k: hub["extra"][k] for k in ("metric", "value", "unit", "target")} == {
        "metric": "control ratio", "value": 4.8, "unit": "ratio", "target": "<= 3.0"}
    assert [f["metric"] for f in hub["extra"]["figures"]] == [
        "hub default ratio", "control ratio", "control p50"]
    assert hub["duration"] == 29_750
    assert tests["golden.trend_maths"]["extra"] == {
        "metric": "series right", "value": 7, "unit": "series", "target": "== 7"}
    # Infinity is not JSON, and a figure that is not a finite number meets no target.
    assert tests["bench.auth_overhead"]["extra"]["value"] is None
    assert Figure("ratio", math.inf, "ratio", ">= 1.2").met is False
    assert Figure("ratio", math.nan, "ratio", "<= 1.2").met is False
    assert tests["golden.ocr"]["rawStatus"] == "error" and "extra" not in tests["golden.ocr"]
    assert document["results"]["summary"] == {
        "tests": 5, "passed": 1, "failed": 3, "skipped": 1, "pending": 0, "other": 0,
        "suites": 2, "start": 1_000, "stop": 31_200, "duration": 30_200}


@pytest.mark.django_db
def test_the_control_plane_ingests_the_smoke_report(api_client_for, tenant_a):
    document = ctrf.ctrf_document(results_of_every_kind(), start_ms=1_795_000_000_000,
                                  stop_ms=1_795_000_031_200,
                                  environment={"commit": "abc123", "branchName": "main"})
    client = api_client_for(tenant_a, scopes=["outcomes:write"])
    response = client.post("/v1/outcomes/ctrf", json.dumps(document),
                           content_type="application/json")
    assert response.status_code == 201, response.content
    # passed + failed tests (the skipped one records nothing), two events each
    assert response.json() == {"created": 8, "domain": "benchmarks.agent33-bench"}


def test_the_table_shows_every_figure_and_marks_misses():
    text = ctrf.table(results_of_every_kind())
    lines = text.splitlines()
    assert lines[0].split() == ["result", "test", "figure", "value", "target", "time"]
    hub = next(line for line in lines if "control ratio" in line)
    assert hub.rstrip().endswith("<= 3.0  <-")
    assert next(line for line in lines if "bench.hub_scale" in line).startswith("MISS")
    assert next(line for line in lines if "golden.ocr" in line).startswith("ERROR")
    assert "TypeError: a bug" in text  # why it broke
    assert next(line for line in lines if "bench.scale_workers" in line).startswith("skip")
    assert "29.8 s" in text


# --- the harness: exit status and report, with stand-in benchmarks ----------------------


@pytest.fixture
def harness(monkeypatch, tmp_path):
    """bench/smoke.py with stand-in benchmarks (run in fresh interpreters like the real
    ones), its logs and report in a temporary folder, and the environment restored after."""
    for name in (*smoke.UNSET, "BENCH_DB_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(smoke, "LOGS", tmp_path / "logs")

    def run(*names: str, timeout: float = 60, budget: float = 600) -> tuple[int, dict]:
        monkeypatch.setattr(smoke, "BENCHES", tuple(
            smoke.Bench(f"fake.{name}", f"tests.bench.fake_benches:{name}", {}, timeout)
            for name in names))
        report = tmp_path / "report.json"
        status = smoke.main(["--only", "fake.", "--report", str(report),
                             "--budget", str(budget)])
        return status, json.loads(report.read_text())

    return run


@pytest.mark.slow
def test_a_missed_target_or_wrong_answer_is_a_failed_test_and_exit_status_0(harness, capsys):
    status, document = harness("meets", "misses", "wrong_answer")
    assert status == 0
    assert_valid_smoke_report(document)
    tests = {t["name"]: t for t in document["results"]["tests"]}
    assert tests["fake.meets"]["status"] == "passed"
    assert tests["fake.misses"]["status"] == "failed"
    assert tests["fake.misses"]["message"] == (
        "missed: fake throughput 0.8 ratio (target >= 1.6)")
    assert tests["fake.wrong_answer"]["status"] == "failed"
    assert tests["fake.wrong_answer"]["message"] == "the API answered 500, expected 201"
    assert "rawStatus" not in tests["fake.wrong_answer"]
    out = capsys.readouterr().out
    assert "fake throughput" in out and ">= 1.6  <-" in out
    assert "3 tests in" in out and "1 met every target, 2 missed" in out
    assert (smoke.LOGS / "fake.meets.log").read_text().startswith("measuring ...")


@pytest.mark.slow
def test_a_broken_bench_script_is_exit_status_2_with_the_report_still_written(harness):
    status, document = harness("broken", "meets")
    assert status == 2
    assert_valid_smoke_report(document)
    broken, meets = document["results"]["tests"]
    assert (broken["status"], broken["rawStatus"]) == ("failed", "error")
    assert broken["message"] == "KeyError: 'a bug in the bench script'"
    assert meets["status"] == "passed"  # the run went on


@pytest.mark.slow
def test_a_hanging_bench_is_stopped_at_its_timeout_and_later_tests_skip_past_the_budget(
    harness,
):
    status, document = harness("hangs", "meets", timeout=3, budget=smoke.MIN_SECONDS_TO_START + 2)
    assert status == 0
    hangs, meets = document["results"]["tests"]
    assert hangs["status"] == "failed" and "did not finish within 3 s" in hangs["message"]
    assert hangs["duration"] < 60_000
    assert meets["status"] == "skipped"
    assert "time budget" in meets["message"]


@pytest.mark.slow
def test_a_golden_task_through_a_real_server_writes_a_valid_report(
    require_postgres, monkeypatch, tmp_path
):
    """The real harness end to end on one golden task: a fresh database, gunicorn, the API."""
    for name in smoke.UNSET:
        monkeypatch.delenv(name, raising=False)
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    monkeypatch.setenv("BENCH_DB_PREFIX", f"agent33_test_{checkout}")
    monkeypatch.setattr(smoke, "LOGS", tmp_path / "logs")
    report = tmp_path / "benchmarks.ctrf.json"
    status = smoke.main(["--only", "golden.trend_maths", "--report", str(report)])
    assert status == 0
    document = json.loads(report.read_text())
    assert_valid_smoke_report(document)
    [test] = document["results"]["tests"]
    assert (test["name"], test["status"]) == ("golden.trend_maths", "passed")
    assert test["extra"] == {"metric": "golden series with the expected direction and "
                             "change_pct", "value": 7, "unit": "series", "target": "== 7"}
