"""Overhead of a text-to-speech request through the API versus calling the engine directly.

Run: `.venv/bin/python bench/multimodal_overhead.py` (a scratch SQLite file; set
BENCH_DATABASE=postgres for a scratch PostgreSQL database on 127.0.0.1).

In one process, with eager execution (the embedded default), each round times:
- direct: `get_provider("espeak").synthesize(TEXT, call)`;
- API: `POST /v1/multimodal/requests {"modality": "text_to_speech", "input_text": TEXT}`
  through Django's full WSGI stack (middleware, token auth, scope check, throttle, policy
  checks, the request row, the claim, the eager task, the WAV artifact written to storage,
  the result row, the response), asserting the answer is `completed`.
Rounds alternate the two so both see the same machine conditions. Prints p50/p95 of each,
the difference of the percentiles and the percentiles of the per-round difference
(target: overhead p95 < 30 ms), plus the CPU time this process spent, which a busy machine
inflates far less than wall-clock time. `run()` returns the figures (`make bench-smoke`
calls it with fewer rounds).
"""

from __future__ import annotations

import importlib
import os
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


def configure(postgres: bool) -> str:
    scratch = Path(tempfile.mkdtemp(prefix="agent33-bench-mm-"))
    if postgres:
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
    return database_url


def ms(samples: list[float], pct: float) -> float:
    return percentile(samples, pct) * 1000


def run(*, rounds: int = ROUNDS, postgres: bool = False) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs fewer rounds). Sets up
    Django in this process, so run it once per process."""
    database_url = configure(postgres)
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

    database = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"TTS request overhead ({rounds} rounds, {database}, eager, text {len(TEXT)} chars)")
    print(f"  espeak direct : p50 {ms(direct_samples, 50):7.2f} ms   "
          f"p95 {ms(direct_samples, 95):7.2f} ms")
    print(f"  through API   : p50 {ms(api_samples, 50):7.2f} ms   "
          f"p95 {ms(api_samples, 95):7.2f} ms")
    p95_gap = ms(api_samples, 95) - ms(direct_samples, 95)
    print(f"  overhead      : p50 {ms(api_samples, 50) - ms(direct_samples, 50):7.2f} ms   "
          f"p95 {p95_gap:7.2f} ms  (difference of percentiles)")
    print(f"  per round     : p50 {ms(paired, 50):7.2f} ms   p95 {ms(paired, 95):7.2f} ms  "
          "(percentiles of API minus direct)")
    print(f"  CPU time      : p50 {ms(cpu['api'], 50) - ms(cpu['direct'], 50):7.2f} ms   "
          f"p95 {ms(cpu['api'], 95) - ms(cpu['direct'], 95):7.2f} ms  (this process only, "
          "API minus direct; unaffected by waiting for a busy CPU)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  machine load  : {load:.2f} (1-min average; {os.cpu_count()} CPUs)")
    verdict = "OK" if max(p95_gap, ms(paired, 95)) < TARGET_MS else "OVER TARGET"
    print(f"  target p95 overhead < {TARGET_MS:.0f} ms: {verdict}")
    return [
        Figure("API minus direct espeak, p95 (difference of percentiles)", p95_gap, "ms",
               f"< {TARGET_MS:g}"),
        Figure("API minus direct espeak, p95 of the per-round difference", ms(paired, 95), "ms",
               f"< {TARGET_MS:g}"),
        Figure("TTS request through the API, p50", ms(api_samples, 50), "ms"),
        Figure("espeak direct, p50", ms(direct_samples, 50), "ms"),
    ]


def main() -> int:
    figures = run(postgres=os.environ.get("BENCH_DATABASE") == "postgres")
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
