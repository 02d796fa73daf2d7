"""Outcome ingest: 100,000 events through the bulk API over HTTP vs raw psycopg COPY, and
the two hand-written statements of the outcomes service against their ORM equivalents.

Usage (PostgreSQL reachable as postgres@127.0.0.1:5432, the default):

    .venv/bin/python bench/outcomes_ingest.py [--events 100000] [--batch 5000] [--rounds 2]
        [--keys 10000] [--server postgres://postgres@127.0.0.1:5432] [--workers 1] [--keep]

What it does, all in one run against one PostgreSQL database it creates for itself
(`agent33_bench_outcomes_ingest`, dropped again unless --keep):

1. creates and migrates the database, a tenant and an `outcomes:write` token (manage.py);
2. starts gunicorn (DEBUG=0) on a free 127.0.0.1 port;
3. per round: POSTs the events to /v1/outcomes/events/bulk in batches of `--batch`, one
   request after another over a keep-alive connection (request bodies are serialised before
   the clock starts); empties the table; then writes the same rows (fresh ids, same values)
   with one raw psycopg `COPY ... FROM STDIN` into the same table (rows built before the
   clock starts); empties the table again;
4. prints events/s for both and the ratio API / COPY (target: >= 0.25); and, per round, the
   same events through a second gunicorn whose rollups are switched off
   (bench/wsgi_norollups.py), alternating which goes first, twice: as the events are (7 s
   apart, so a bulk of 5,000 spans ten hours: a backfill) and with each bulk spread over
   one minute (a live sender); prints with ÷ without rollups (target: >= 0.9);
5. in this process (Django set up on the same database), per round and alternating:
   - "service: COPY vs bulk_create": `outcomes.services.event_record_bulk` stores the same
     events in batches of `--batch` (validation, insert, counts: all it does) once as it is
     (`bulk_create`) and once with its insert swapped for a psycopg COPY (what it used
     from 100 events on PostgreSQL before); prints events/s and the ratio;
   - "counts: upsert vs ORM": one bulk's per-key count write for `--keys` distinct
     (metric, domain, event type) keys, half of them already counted, with the service's
     ORM write (`_counts_add`: upsert-lock of the keys, then an UPDATE adding F() + Case)
     vs the hand-written `INSERT ... ON CONFLICT DO UPDATE SET count = count +
     EXCLUDED.count` it replaced (both in the service's batches of keys), each in a
     transaction that is rolled back; prints the ratio.
   - "rollups: ORM vs unnest upsert": the rollup rows of one bulk, backfill-shaped (all
     new) and live-shaped (the next minute of a sender: its hours and days exist), with the
     ORM write (`rollups._add_orm`) vs the PostgreSQL statement (`_add_postgresql`).
   A hand-written statement stays in the service only while its ratio is >= 3.

`run()` returns the figures (`make bench-smoke` calls it with fewer events and one round).

The API's time covers HTTP, authentication, JSON parsing, validation of every event, the
insert (`bulk_create`) and the summary counts; COPY's covers only
the server's work of storing the same rows with the same indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    Figure,
    drop_postgres_database,
    free_port,
    fresh_postgres_database,
    missed,
)

PYTHON = sys.executable
DB_NAME = "agent33_bench_outcomes_ingest"
TABLE = "outcomes_outcomeevent"
COLUMNS = (
    "id, tenant_id, domain, event_type, metric_type, value, occurred_at, metadata, created_at"
)
METRICS = ("success_rate", "quality_score", "latency_ms", "cost_usd")
DOMAINS = ("support", "research", "coding", "sales", "ops", "billing", "search", "triage")
EVENT_TYPES = ("task_completed", "review", "handoff", "retry")
TARGET_RATIO = 0.25
TARGET_ROLLUPS = 0.9  # bulk API throughput with rollups ÷ without (DESIGN §8.6)


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def make_events(count: int) -> list[dict]:
    rng = random.Random(20260101)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for i in range(count):
        metric = METRICS[i % 4]
        value = {
            "success_rate": rng.random(),
            "quality_score": rng.uniform(1, 10),
            "latency_ms": rng.uniform(50, 3000),
            "cost_usd": rng.uniform(0.0001, 0.2),
        }[metric]
        events.append(
            {
                "domain": DOMAINS[rng.randrange(len(DOMAINS))],
                "event_type": EVENT_TYPES[rng.randrange(len(EVENT_TYPES))],
                "metric_type": metric,
                "value": round(value, 6),
                "occurred_at": (start + timedelta(seconds=i * 7)).isoformat(),
                "metadata": {"agent": f"agent-{i % 13}", "run": i},
            }
        )
    return events


def live_shaped(events: list[dict], batch: int) -> list[dict]:
    """The same events, each bulk's spread over one minute (a sender posting as it goes),
    bulks a minute apart; the original spacing (7 s, a bulk of 5,000 spanning ten hours)
    is a backfill's shape."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {**event, "occurred_at": (start + timedelta(minutes=i // batch,
                                                    seconds=60 * (i % batch) / batch)
                                  ).isoformat()}
        for i, event in enumerate(events)
    ]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("gunicorn exited during start-up")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"server did not answer {url} within {timeout}s")


def truncate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE}, outcomes_outcomecount, outcomes_outcomerollup")
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def count_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def run_api(base_url: str, token: str, bodies: list[bytes]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=300.0) as client:
        started = time.perf_counter()
        for body in bodies:
            response = client.post("/v1/outcomes/events/bulk", content=body)
            if response.status_code != 201:
                sys.exit(f"bulk request failed: {response.status_code} {response.text[:300]}")
        return time.perf_counter() - started


def copy_rows(events: list[dict], tenant: str) -> list[tuple]:
    now = datetime.now(UTC)
    return [
        (
            f"outcome-{secrets.token_hex(16)}",
            tenant,
            e["domain"],
            e["event_type"],
            e["metric_type"],
            e["value"],
            datetime.fromisoformat(e["occurred_at"]),
            json.dumps(e["metadata"], separators=(",", ":")),
            now,
        )
        for e in events
    ]


def run_copy(database_url: str, rows: list[tuple]) -> float:
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {TABLE} ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def setup_django(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
    import django

    django.setup()


def copy_insert(tenant, cleaned, now) -> list:
    """The COPY ... FROM STDIN insert the service used from 100 events on PostgreSQL until
    this comparison retired it; swapped in for `outcomes.services._insert_events` (and, as
    it, returns the rows, whose rollups the service then adds)."""
    from django.db import connection

    from outcomes.services import _new_events

    rows = _new_events(tenant, cleaned, now)
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {TABLE} ({COLUMNS}) FROM STDIN"
    ) as copy:
        for row, event in zip(rows, cleaned, strict=True):
            copy.write_row((row.pk, tenant.pk, row.domain, row.event_type, row.metric_type,
                            row.value, row.occurred_at, event.metadata_json, now))
    return rows


def run_service(events: list[dict], batch: int, *, use_copy: bool) -> float:
    """event_record_bulk over every batch; seconds. Decline evaluation after commit (a
    Celery task when there is a broker) is left out of both paths."""
    from agent33.tenancy.models import Tenant
    from outcomes import services

    tenant = Tenant.objects.get(pk="bench")
    saved = services._insert_events, services._after_events_committed
    services._after_events_committed = lambda tenant, keys: None
    if use_copy:
        services._insert_events = copy_insert
    try:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            services.event_record_bulk(tenant=tenant, events=events[start : start + batch])
        return time.perf_counter() - started
    finally:
        services._insert_events, services._after_events_committed = saved


def count_keys(count: int) -> Counter:
    """`count` distinct (metric, domain, event type) keys with increments 1..5."""
    rng = random.Random(99)
    return Counter(
        {(METRICS[i % 4], f"domain-{i // 4 % 2500}", f"type-{i // 10_000}"): rng.randint(1, 5)
         for i in range(count)}
    )


def counts_upsert(tenant_id: str, counts: Counter) -> None:
    """The hand-written per-key count upsert the service used before (the baseline)."""
    from django.db import connection

    head = (
        "INSERT INTO outcomes_outcomecount (tenant_id, metric_type, domain, event_type, "
        "count) VALUES "
    )
    tail = (
        " ON CONFLICT (tenant_id, metric_type, domain, event_type) DO UPDATE SET "
        "count = outcomes_outcomecount.count + EXCLUDED.count"
    )
    from outcomes.services import _KEY_BATCH

    items = sorted(counts.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), _KEY_BATCH):
            chunk = items[start : start + _KEY_BATCH]
            params = [value for (m, d, e), n in chunk for value in (tenant_id, m, d, e, n)]
            cursor.execute(head + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk)) + tail,
                           params)


def run_counts(counts: Counter, *, orm: bool) -> float:
    """One bulk's count write in a transaction that is rolled back; seconds."""
    from django.db import transaction

    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from outcomes import services

    tenant = Tenant.objects.get(pk="bench")
    with transaction.atomic(), tenant_scope(tenant):
        started = time.perf_counter()
        if orm:
            services._counts_add(tenant, counts)
        else:
            counts_upsert(tenant.pk, counts)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def run_rollups(cells: list, *, orm: bool) -> float:
    """One bulk's rollup write in a transaction that is rolled back; seconds."""
    from django.db import transaction

    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from outcomes import rollups

    tenant = Tenant.objects.get(pk="bench")
    with transaction.atomic(), tenant_scope(tenant):
        started = time.perf_counter()
        (rollups._add_orm if orm else rollups._add_postgresql)(tenant, cells)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def rollup_cells(events: list[dict]) -> list:
    from outcomes.rollups import RollupInput, cells_of

    return cells_of([
        RollupInput(e["metric_type"], e["domain"], e["event_type"], e["value"],
                    datetime.fromisoformat(e["occurred_at"]))
        for e in events
    ])


def in_process(
    env: dict, events: list[dict], *, batch: int, rounds: int, keys: int
) -> list[Figure]:
    """The service's insert and count write against their hand-written alternatives."""
    database_url = env["DATABASE_URL"]
    setup_django(env)
    service = {"copy": [], "bulk_create": []}
    for round_no in range(1, rounds + 1):
        for mode in ("copy", "bulk_create") if round_no % 2 else ("bulk_create", "copy"):
            service[mode].append(run_service(events, batch, use_copy=mode == "copy"))
            assert count_rows(database_url) == len(events)
            truncate(database_url)
        print(f"service round {round_no}: COPY {service['copy'][-1]:6.2f} s   bulk_create "
              f"{service['bulk_create'][-1]:6.2f} s", flush=True)

    counts = count_keys(keys)
    half = Counter(dict(list(counts.items())[::2]))
    counts_upsert("bench", half)  # committed (autocommit): half the keys already counted
    timings = {"upsert": [], "orm": []}
    for round_no in range(1, 2 * rounds + 2):
        for orm in (True, False) if round_no % 2 else (False, True):
            timings["orm" if orm else "upsert"].append(run_counts(counts, orm=orm))
    truncate(database_url)

    # The rollups of one bulk (backfill-shaped: every row new) and of the next minute's bulk
    # of a live sender (its hours and days already there): the ORM write vs the statement.
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from outcomes import rollups

    tenant = Tenant.objects.get(pk="bench")
    live = live_shaped(events[: 2 * batch], batch)
    with tenant_scope(tenant):
        rollups._add_postgresql(tenant, rollup_cells(live[:batch]))  # committed
    cases = {"backfill bulk": rollup_cells(events[:batch]),
             "live bulk": rollup_cells(live[batch:])}
    rollup_ms: dict[tuple[str, bool], list[float]] = {
        (case, orm): [] for case in cases for orm in (True, False)}
    for round_no in range(1, 2 * rounds + 2):
        for case, cells in cases.items():
            for orm in (True, False) if round_no % 2 else (False, True):
                rollup_ms[(case, orm)].append(run_rollups(cells, orm=orm) * 1000)
    truncate(database_url)
    rollup_figures = []
    for case, cells in cases.items():
        orm_ms = statistics.median(rollup_ms[(case, True)])
        sql_ms = statistics.median(rollup_ms[(case, False)])
        print(f"rollups of a {case} ({len(cells)} rows): ORM {orm_ms:.1f} ms, unnest upsert "
              f"{sql_ms:.1f} ms: {orm_ms / sql_ms:.2f}x  (the statement stays if >= 3)")
        rollup_figures.append(Figure(f"rollup upsert ÷ ORM rollup write, {case}",
                                     orm_ms / sql_ms, "ratio"))

    copy_rate = len(events) / statistics.median(service["copy"])
    orm_rate = len(events) / statistics.median(service["bulk_create"])
    upsert_ms = statistics.median(timings["upsert"]) * 1000
    orm_ms = statistics.median(timings["orm"]) * 1000
    print()
    print(f"service, COPY path        : {copy_rate:9.0f} events/s")
    print(f"service, bulk_create path : {orm_rate:9.0f} events/s")
    print(f"service: COPY vs bulk_create : {copy_rate / orm_rate:.2f}x  (COPY stays if >= 3)")
    print(f"counts of {keys} distinct keys: upsert {upsert_ms:.1f} ms, ORM {orm_ms:.1f} ms")
    print(f"counts: upsert vs ORM        : {orm_ms / upsert_ms:.2f}x  (upsert stays if >= 3)")
    # Reported, not judged: below 3x the ORM path is the one the service keeps.
    return [
        Figure("service COPY ÷ bulk_create, events/s", copy_rate / orm_rate, "ratio"),
        Figure(f"count upsert ÷ ORM count write, {keys:,} keys", orm_ms / upsert_ms, "ratio"),
        *rollup_figures,
    ]


def run(
    *,
    events: int = 100_000,
    batch: int = 5_000,
    rounds: int = 2,
    workers: int = 1,
    server: str = "postgres://postgres@127.0.0.1:5432",
    keep: bool = False,
    keys: int = 10_000,
) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs it with fewer events)."""
    database_url = fresh_postgres_database(DB_NAME, f"{server}/postgres")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "AGENT33_THROTTLE_RATE": "100000/min",
        "AGENT33_EVENTS_PER_MINUTE": "0",  # the allowance is not what this bench measures
        "PYTHONWARNINGS": "ignore:No directory at",  # whitenoise: no collectstatic here
    }
    print(f"database {DB_NAME}: migrating ...", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "create_tenant", "bench", "--name", "Bench")
    token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "outcomes:write")
    token = token.strip().splitlines()[-1]

    sent = make_events(events)
    bodies = [
        json.dumps({"events": sent[i : i + batch]}).encode()
        for i in range(0, len(sent), batch)
    ]
    print(
        f"{len(sent)} events in {len(bodies)} requests of {batch} "
        f"({sum(map(len, bodies)) / len(bodies) / 1e6:.2f} MB each)",
        flush=True,
    )

    servers = {}
    for name, app in (("rollups", "agent33.wsgi:application"),
                      ("no rollups", "bench.wsgi_norollups:application")):
        port = free_port()
        servers[name] = (f"http://127.0.0.1:{port}", subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), app,
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--timeout", "300", "--log-level", "warning"],
            cwd=ROOT, env=env,
        ))
    base_url = servers["rollups"][0]
    shapes = {"backfill": bodies, "live": [
        json.dumps({"events": live[i : i + batch]}).encode()
        for live in [live_shaped(sent, batch)] for i in range(0, len(sent), batch)
    ]}
    try:
        for url, process in servers.values():
            wait_for(f"{url}/readyz", process)
            run_api(url, token, [json.dumps({"events": sent[:50]}).encode()])  # warm-up
        truncate(database_url)

        api_times, copy_times = [], []
        rollup_times: dict[tuple[str, str], list[float]] = {
            (shape, name): [] for shape in shapes for name in servers}
        for round_no in range(1, rounds + 1):
            api_seconds = run_api(base_url, token, bodies)
            stored = count_rows(database_url)
            assert stored == len(sent), (
                f"API stored {stored} rows, expected {len(sent)}")
            truncate(database_url)
            rows = copy_rows(sent, "bench")
            copy_seconds = run_copy(database_url, rows)
            assert count_rows(database_url) == len(sent)
            truncate(database_url)
            api_times.append(api_seconds)
            copy_times.append(copy_seconds)
            print(
                f"round {round_no}: API {api_seconds:6.2f} s ({len(sent) / api_seconds:8.0f} "
                f"events/s)   COPY {copy_seconds:6.2f} s ({len(sent) / copy_seconds:8.0f} "
                f"events/s)   ratio {copy_seconds / api_seconds:.2f}",
                flush=True,
            )
            # With and without rollups, alternating which goes first, per event shape.
            for shape, shaped in shapes.items():
                names = list(servers) if round_no % 2 else list(servers)[::-1]
                for name in names:
                    seconds = run_api(servers[name][0], token, shaped)
                    assert count_rows(database_url) == len(sent)
                    truncate(database_url)
                    rollup_times[(shape, name)].append(seconds)
                print(f"round {round_no}, {shape}: with rollups "
                      f"{rollup_times[(shape, 'rollups')][-1]:6.2f} s, without "
                      f"{rollup_times[(shape, 'no rollups')][-1]:6.2f} s", flush=True)
    except BaseException:
        if not keep:
            drop_postgres_database(DB_NAME, f"{server}/postgres")
        raise
    finally:
        for _, process in servers.values():
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    rollup_ratios = {
        shape: statistics.median(rollup_times[(shape, "no rollups")])
        / statistics.median(rollup_times[(shape, "rollups")])
        for shape in shapes
    }
    for shape, value in rollup_ratios.items():
        verdict = "PASS" if value >= TARGET_ROLLUPS else "FAIL"
        print(f"bulk API with ÷ without rollups, {shape:8}: {value:.2f}  "
              f"(target >= {TARGET_ROLLUPS}: {verdict})")
    api_rate = len(sent) / statistics.median(api_times)
    copy_rate = len(sent) / statistics.median(copy_times)
    ratio = api_rate / copy_rate
    print()
    print(f"bulk API over HTTP : {api_rate:9.0f} events/s (median of {rounds} rounds)")
    print(f"raw psycopg COPY   : {copy_rate:9.0f} events/s")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"API / COPY ratio   : {ratio:.2f}  (target >= {TARGET_RATIO}: {verdict})\n",
          flush=True)
    try:
        service_figures = in_process(env, sent, batch=batch, rounds=rounds, keys=keys)
    finally:
        if not keep:
            drop_postgres_database(DB_NAME, f"{server}/postgres")
    return [
        Figure("bulk API ÷ raw COPY, events/s", ratio, "ratio", f">= {TARGET_RATIO}"),
        Figure("bulk API with ÷ without rollups, live bulks (one minute each)",
               rollup_ratios["live"], "ratio", f">= {TARGET_ROLLUPS}"),
        Figure("bulk API with ÷ without rollups, backfill bulks (ten hours each)",
               rollup_ratios["backfill"], "ratio", f">= {TARGET_ROLLUPS}"),
        Figure("bulk API over HTTP", api_rate, "events/s"),
        Figure("raw psycopg COPY", copy_rate, "events/s"),
        *service_figures,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--keys", type=int, default=10_000,
                        help="distinct keys of the count-write comparison")
    args = parser.parse_args()
    figures = run(events=args.events, batch=args.batch, rounds=args.rounds,
                  workers=args.workers, server=args.server, keep=args.keep, keys=args.keys)
    sys.exit(1 if missed(figures) else 0)


if __name__ == "__main__":
    main()
