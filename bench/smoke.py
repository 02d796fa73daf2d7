"""`make bench-smoke`: the golden tasks and every benchmark at smoke size, in at most ten
minutes on 2 cores. Writes `reports/benchmarks.ctrf.json` (CTRF; `POST /v1/outcomes/ctrf` and
`manage.py ingest_ctrf` take it) and prints a table.

    .venv/bin/python bench/smoke.py [--only NAME ...] [--report PATH] [--budget SECONDS]

- Golden tasks (bench/golden.py): fixed inputs with known answers through the real API of a
  gunicorn on a fresh PostgreSQL database.
- Benchmarks: each bench script's own `run()` with smaller sizes, one at a time, each in a
  fresh interpreter (they set up Django for their own databases), its output in
  `reports/bench-smoke/<name>.log`.

Exit status 0 when the harness ran, whatever the figures: a missed target, a wrong golden
answer or a benchmark that could not measure (AssertionError, SystemExit) is a failed test in
the report. Exit status 2 when the harness broke: any other exception (a bug in a bench
script or here), or the golden server could not be set up; the report is still written.
Tests that would start after the time budget is spent are reported as skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import report as ctrf  # noqa: E402
from bench.common import Figure, missed  # noqa: E402

REPORT = ROOT / "reports" / "benchmarks.ctrf.json"
LOGS = ROOT / "reports" / "bench-smoke"
BUDGET_SECONDS = 600
MIN_SECONDS_TO_START = 20  # a test is not started with less of the budget left
# Embedded mode for everything the smoke job starts: no broker, no developer cloud keys.
UNSET = ("CELERY_BROKER_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY",
         "ELEVENLABS_BASE_URL", "OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_BASE_URL")


@dataclass(frozen=True)
class Bench:
    """A benchmark at smoke size: `function` ("module:name") called with `kwargs`."""

    name: str
    function: str
    kwargs: dict = field(default_factory=dict)
    timeout: float = 180


BENCHES = (
    Bench("bench.auth_overhead", "bench.auth_overhead:run", {"rounds": 800}, 120),
    Bench("bench.outcomes_ingest", "bench.outcomes_ingest:run",
          {"events": 20_000, "rounds": 1}, 220),
    Bench("bench.outcomes_scale", "bench.outcomes_scale:run",
          {"large": 100_000, "small": 1_000, "others": 2, "other_rows": 20_000,
           "requests": 40}, 200),
    Bench("bench.outcomes_series", "bench.outcomes_series:run",
          {"large": 200_000, "small": 10_000, "requests": 20}, 200),
    Bench("bench.hub_scale", "bench.hub_scale:run",
          {"big": 20_000, "requests": 60, "controls": 60}, 200),
    Bench("bench.multimodal_overhead", "bench.multimodal_overhead:run", {"rounds": 60}, 120),
    Bench("bench.scale_workers", "bench.scale_workers:run", {"seconds": 12, "rounds": 4}, 150),
    Bench("bench.whoami_under_ocr", "bench.whoami_under_ocr:run",
          {"size": 1300, "seconds": 5}, 120),
    Bench("bench.webhooks", "bench.webhooks:run", {"alerts": 40, "flood_size": 200}, 120),
    Bench("bench.batches", "bench.batches:run", {"runs": 1_000}, 120),
    Bench("bench.ab", "bench.ab:run", {"ref": "429cd63", "seconds": 12, "rounds": 4}, 180),
    Bench("bench.hub_live", "bench.hub_live:run",
          {"streams": 10, "changes": 20, "idle": 5.0, "browser_changes": 5}, 150),
    Bench("bench.asgi_vs_wsgi", "bench.asgi_vs_wsgi:run", {"seconds": 12, "rounds": 4}, 150),
)

# What a test's exceptions mean: these two are how golden tasks and bench scripts say "the
# system gave a wrong answer" or "could not measure"; anything else is a broken harness.
MISSES = (AssertionError, SystemExit)


@dataclass
class Outcome:
    kind: str  # "ok", "failed" (a wrong answer), "error" (a broken harness)
    figures: list[Figure] = field(default_factory=list)
    message: str = ""


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        text = f"exited with status {exc.code}"
    return text.splitlines()[0][:300] if not isinstance(exc, AssertionError) else text[:300]


def _outcome(call: Callable[[], list[Figure]]) -> Outcome:
    try:
        return Outcome("ok", call())
    except MISSES as exc:
        traceback.print_exc()
        return Outcome("failed", message=_message(exc))
    except Exception as exc:
        traceback.print_exc()
        return Outcome("error", message=f"{type(exc).__name__}: {_message(exc)}")


# --- benchmarks, each in a fresh interpreter ---------------------------------------------


def _bench_child(function: str, kwargs: dict, log_path: str, conn) -> None:
    """In the child: its own process group (so a timeout ends its servers too), output to the
    log, the bench's `run()`, the outcome back through the pipe."""
    os.setpgrp()
    log = open(log_path, "w", buffering=1)  # noqa: SIM115 (the process's stdout from here on)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    module, name = function.split(":")
    outcome = _outcome(lambda: getattr(importlib.import_module(module), name)(**kwargs))
    conn.send(outcome)
    conn.close()


def run_bench(bench: Bench, timeout: float, log_path: Path) -> Outcome:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_bench_child,
                            args=(bench.function, bench.kwargs, str(log_path), sender))
    child.start()
    sender.close()
    finished = receiver.poll(timeout)
    try:
        if not finished:
            return Outcome("failed", message=f"did not finish within {timeout:.0f} s; "
                                             f"see {log_path}")
        try:
            return receiver.recv()
        except EOFError:
            child.join(10)
            return Outcome("error", message=f"the bench process died (exit status "
                                            f"{child.exitcode}); see {log_path}")
    finally:
        child.join(30 if finished else 0)
        # Whatever is left of its process group (a timed-out bench, servers a crashed one
        # did not stop) ends here.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                break
            child.join(5)


# --- the run -----------------------------------------------------------------------------


@dataclass
class Harness:
    budget: float
    started: float = field(default_factory=time.monotonic)
    results: list[ctrf.TestResult] = field(default_factory=list)
    total: int = 0
    broken: list[str] = field(default_factory=list)  # failures outside any test

    def remaining(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def record(self, name: str, suite: str, run: Callable[[float], Outcome],
               *, timeout: float = 0) -> None:
        """Run one test (`run` gets the seconds it may take) unless the budget is spent."""
        start_ms = int(time.time() * 1000)
        if self.remaining() < MIN_SECONDS_TO_START:
            outcome = Outcome("ok", message=f"the time budget of {self.budget:.0f} s was spent")
            status = "skipped"
        else:
            outcome = run(min(timeout, self.remaining()) if timeout else self.remaining())
            status = "passed" if outcome.kind == "ok" and not missed(outcome.figures) else "failed"
            if outcome.kind == "ok" and missed(outcome.figures):
                outcome.message = "missed: " + "; ".join(
                    f"{f.metric} {f.value:.4g} {f.unit} (target {f.target})"
                    for f in missed(outcome.figures))
        result = ctrf.TestResult(name, suite, status, start_ms, int(time.time() * 1000),
                                 outcome.figures, outcome.message, outcome.kind == "error")
        self.results.append(result)
        verdict = "ERROR" if result.error else {"passed": "ok", "failed": "MISS"}.get(
            status, status)
        print(f"[{len(self.results):2d}/{self.total}] {name:<42} {verdict:<5} "
              f"{result.duration_ms / 1000:6.1f} s", flush=True)


def run_golden(harness: Harness, names: list[str]) -> None:
    from bench import golden

    if not names:
        return
    server_log = LOGS / "golden-server.log"
    try:
        with golden.golden_server(server_log) as server:
            for name in names:
                task = golden.TASKS[name]
                harness.record(name, "golden", lambda _, task=task: _outcome(
                    lambda: task(server)))
    except Exception as exc:
        traceback.print_exc()
        problem = f"golden server: {type(exc).__name__}: {_message(exc)}; see {server_log}"
        harness.broken.append(problem)
        done = {result.name for result in harness.results}
        for name in names:
            if name not in done:
                harness.record(name, "golden", lambda _, p=problem: Outcome("error", message=p))


def _shown(path: Path) -> Path:
    """A path as a person would type it from the checkout."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def selected(only: list[str]) -> tuple[list[str], list[Bench]]:
    from bench.golden import TASKS

    def wanted(name: str) -> bool:
        return not only or any(pattern in name for pattern in only)

    return [n for n in TASKS if wanted(n)], [b for b in BENCHES if wanted(b.name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only tests whose name contains one of these")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds")
    args = parser.parse_args(argv)

    for name in UNSET:
        os.environ.pop(name, None)
    # Scratch databases of this checkout only: another checkout's run on the same server
    # keeps its own (bench.common.database_name).
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    os.environ.setdefault("BENCH_DB_PREFIX", f"agent33_smoke_{checkout}")
    LOGS.mkdir(parents=True, exist_ok=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)

    golden_names, benches = selected(args.only)
    harness = Harness(budget=args.budget)
    harness.total = len(golden_names) + len(benches)
    print(f"bench-smoke: {harness.total} tests, budget {args.budget:.0f} s, logs in "
          f"{_shown(LOGS)}/", flush=True)
    start_ms = int(time.time() * 1000)
    run_golden(harness, golden_names)
    for bench in benches:
        log_path = LOGS / f"{bench.name}.log"
        harness.record(bench.name, "bench",
                       lambda timeout, b=bench, log=log_path: run_bench(b, timeout, log),
                       timeout=bench.timeout)
    stop_ms = int(time.time() * 1000)

    document = ctrf.ctrf_document(harness.results, start_ms=start_ms, stop_ms=stop_ms,
                                  environment=ctrf.git_environment())
    args.report.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")

    results = harness.results
    errors = sum(r.error for r in results)
    met = sum(r.status == "passed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print()
    print(ctrf.table(results))
    print()
    # Worded so that no CI log reader takes it for a test runner's "N passed, N failed".
    print(f"bench-smoke: {len(results)} tests in {(stop_ms - start_ms) / 1000:.0f} s; "
          f"{met} met every target, {len(results) - met - skipped - errors} missed, "
          f"{skipped} skipped, {errors} broke the harness")
    shown = _shown(args.report)
    print(f"CTRF report: {shown}  (record it: manage.py ingest_ctrf {shown} --tenant SLUG)")
    for problem in harness.broken:
        print(f"harness broken: {problem}")
    return 2 if errors or harness.broken else 0


if __name__ == "__main__":
    sys.exit(main())
