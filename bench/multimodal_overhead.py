"""Overhead of a text-to-speech request through the API versus calling the engine directly,
on SQLite (the target) and on PostgreSQL (printed beside it), in one run.

Run: `.venv/bin/python bench/multimodal_overhead.py` (BENCH_ROUNDS=300 by default). It runs
one measuring process per database, one after the other: a scratch SQLite file, then a
scratch PostgreSQL database on 127.0.0.1 (skipped, saying why, when the server is not
reachable). `--database sqlite|postgres` runs one measuring process alone and prints its
figures as JSON. `run()` returns the figures (`make bench-smoke` calls it with fewer rounds).

In each process, with eager execution (the embedded default), each round times:
- direct: `get_provider("espeak").synthesize(TEXT, call)`;
- API: `POST /v1/multimodal/requests {"modality": "text_to_speech", "input_text": TEXT}`
  through Django's full WSGI stack (middleware, token auth, scope check, throttle, policy
  checks, the request row, the claim, the eager task, the WAV artifact written to storage,
  the result row, the response), asserting the answer is `completed`.
Rounds alternate the two so both see the same machine conditions. Prints p50/p95 of each,
the difference of the percentiles and the percentiles of the per-round difference
(target on SQLite: overhead p95 < 30 ms), plus the CPU time the process spent, which a busy
machine inflates far less than wall-clock time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, fresh_postgres_database, missed, percentile  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
WARMUP = 20
TEXT = "The quick brown fox jumps over the lazy dog."
TARGET_MS = 30.0
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def configure(database: str) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="agent33-bench-mm-"))
    if database == "postgres":
        database_url = fresh_postgres_database("agent33_bench_multimodal")
    else:
        database_url = f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="agent33.settings",
        DATABASE_URL=database_url,
        MEDIA_ROOT=str(scratch / "media"),
        DEBUG="0",
        SECRET_KEY="bench-" + "k" * 50,
        AGENT33_THROTTLE_RATE="1000000/min",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("CELERY_BROKER_URL", None)  # eager: the embedded default


def ms(samples: list[float], pct: float) -> float:
    return percentile(samples, pct) * 1000


def measure(database: str, rounds: int = ROUNDS) -> dict[str, float]:
    configure(database)
    importlib.import_module("agent33.wsgi")  # set up as a server process is
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from agent33.tenancy.services import tenant_create, token_issue
    from multimodal.providers.base import ProviderCall
    from multimodal.providers.registry import get_provider

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    tenant = tenant_create(slug="bench")
    token = token_issue(tenant=tenant, scopes=["multimodal:write", "multimodal:read"]).plaintext
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    espeak = get_provider("espeak")
    body = {"modality": "text_to_speech", "input_text": TEXT}

    cpu: dict[str, list[float]] = {"direct": [], "api": []}

    def direct() -> float:
        cpu_start, start = time.process_time(), time.perf_counter()
        output = espeak.synthesize(TEXT, ProviderCall.with_timeout(60))
        elapsed = time.perf_counter() - start
        cpu["direct"].append(time.process_time() - cpu_start)
        assert output.output_bytes
        return elapsed

    def api() -> float:
        cpu_start, start = time.process_time(), time.perf_counter()
        response = client.post("/v1/multimodal/requests", body, format="json")
        elapsed = time.perf_counter() - start
        cpu["api"].append(time.process_time() - cpu_start)
        assert response.status_code == 201, response.content
        assert response.json()["state"] == "completed", response.json()
        return elapsed

    for _ in range(WARMUP):
        direct()
        api()
    cpu["direct"].clear()
    cpu["api"].clear()
    direct_samples: list[float] = []
    api_samples: list[float] = []
    paired: list[float] = []
    for index in range(rounds):
        # Alternate which goes first so neither always runs on a warmer cache.
        if index % 2:
            d, a = direct(), api()
        else:
            a, d = api(), direct()
        direct_samples.append(d)
        api_samples.append(a)
        paired.append(a - d)

    return {
        "direct_p50": ms(direct_samples, 50), "direct_p95": ms(direct_samples, 95),
        "api_p50": ms(api_samples, 50), "api_p95": ms(api_samples, 95),
        "overhead_p50": ms(api_samples, 50) - ms(direct_samples, 50),
        "overhead_p95": ms(api_samples, 95) - ms(direct_samples, 95),
        "paired_p50": ms(paired, 50), "paired_p95": ms(paired, 95),
        "cpu_p50": ms(cpu["api"], 50) - ms(cpu["direct"], 50),
        "cpu_p95": ms(cpu["api"], 95) - ms(cpu["direct"], 95),
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def run_measuring_process(database: str, rounds: int) -> dict[str, float] | str:
    """The figures of one database, or why there are none."""
    done = subprocess.run(
        [sys.executable, __file__, "--database", database, "--rounds", str(rounds)], cwd=ROOT,
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict[str, float] | str], rounds: int) -> None:
    print(f"TTS request overhead ({rounds} rounds per database, eager, text {len(TEXT)} chars)")
    print(f"  {'':14}" + "".join(f"{DATABASES[db]:>28}" for db in results))
    rows = [
        ("espeak direct", "direct", ""),
        ("through API", "api", ""),
        ("overhead", "overhead", "difference of percentiles"),
        ("per round", "paired", "percentiles of API minus direct"),
        ("CPU time", "cpu", "this process, API minus direct"),
    ]
    def cell(figures: dict[str, float] | str, key: str) -> str:
        if isinstance(figures, str):
            return f"{'—':>28}"
        text = f"p50 {figures[key + '_p50']:6.2f}  p95 {figures[key + '_p95']:6.2f} ms"
        return f"{text:>28}"

    for label, key, note in rows:
        cells = "".join(cell(figures, key) for figures in results.values())
        print(f"  {label:14}{cells}" + (f"  ({note})" if note else ""))
    for db, r in results.items():
        if isinstance(r, str):
            print(f"  {DATABASES[db]}: not measured: {r}")
        else:
            print(f"  {DATABASES[db]} machine load: {r['load']:.2f} (1-min average; "
                  f"{os.cpu_count()} CPUs)")
    sqlite = results.get("sqlite")
    if isinstance(sqlite, dict):
        worst = max(sqlite["overhead_p95"], sqlite["paired_p95"])
        verdict = "OK" if worst < TARGET_MS else "OVER TARGET"
        print(f"  target p95 overhead < {TARGET_MS:.0f} ms on SQLite: {verdict} "
              f"({worst:.2f} ms)")


def run(*, rounds: int = ROUNDS) -> list[Figure]:
    """Both databases, one measuring process each; prints the table and returns the figures
    (the SQLite overhead carries the target; PostgreSQL's is printed beside it)."""
    results = {db: run_measuring_process(db, rounds) for db in DATABASES}
    report(results, rounds)
    figures = []
    for db, result in results.items():
        if isinstance(result, str):
            if db == "sqlite":
                raise RuntimeError(f"SQLite not measured: {result}")
            continue
        target = f"< {TARGET_MS:g}" if db == "sqlite" else None
        name = DATABASES[db]
        figures += [
            Figure(f"{name}: API minus direct espeak, p95 (difference of percentiles)",
                   result["overhead_p95"], "ms", target),
            Figure(f"{name}: API minus direct espeak, p95 of the per-round difference",
                   result["paired_p95"], "ms", target),
            Figure(f"{name}: overhead p50", result["overhead_p50"], "ms"),
        ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=sorted(DATABASES),
                        help="measure this database alone and print JSON")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.database:
        print(json.dumps(measure(args.database, args.rounds)))
        return 0
    return 1 if missed(run(rounds=args.rounds)) else 0


if __name__ == "__main__":
    sys.exit(main())
