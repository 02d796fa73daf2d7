"""Alerts on the worker (DESIGN §8.5): how soon a receiver hears of a change, and whether a
slow receiver delays another tenant's alerts.

    .venv/bin/python bench/webhooks.py [--alerts 200] [--flood 1000] [--smoke] [--keep]

A fresh PostgreSQL database, a real `manage.py worker` (4 slots) and two receivers on
127.0.0.1, run in this process (threading http.server):
1. latency: tenant `fast` moves budgets to pending_approval one after another (each its own
   commit); p50/p95 from that commit to the receiver's 200 for the `budget.pending_approval`
   alert (target p95 < 2 s);
2. noisy neighbour: tenant `slow` queues `--flood` alerts to a receiver that takes 2 s per
   answer; while that backlog drains, `fast`'s alerts are measured again: `fast`'s p95 with
   the flood ÷ alone (target ≤ 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Figure,
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    job_worker,
    missed,
    percentile,
)
from bench.receivers import Receiver  # noqa: E402

DB_NAME = "agent33_bench_webhooks"
SLOW_ANSWER_SECONDS = 2.0


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "agent33.settings"
    importlib.import_module("agent33.wsgi")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_tenant(slug: str, url: str):
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant
    from webhooks.services import endpoint_create

    tenant = Tenant.objects.create(slug=slug, name=slug)
    with tenant_scope(tenant):
        endpoint_create(tenant=tenant, url=url, event_types=["budget.pending_approval"])
    return tenant


def budgets(tenant, count: int) -> list:
    from agent33.tenancy.context import tenant_scope
    from operations.models import AutonomyBudget

    with tenant_scope(tenant):
        return list(AutonomyBudget.objects.bulk_create(
            [AutonomyBudget(tenant=tenant, task_id=f"t{i}") for i in range(count)]))


def announce(tenant, budget) -> float:
    """Move one budget to pending_approval; the time of its commit."""
    from django.db import transaction

    from agent33.tenancy.context import tenant_scope
    from operations.services import budget_transition
    from operations.transitions import Origin

    origin = Origin.system("bench", path="worker")
    with tenant_scope(tenant), transaction.atomic():
        budget_transition(budget=budget, origin=origin, status="pending_approval")
        committed = time.time()  # the alert's rows are written right after, on commit
    return committed


def latencies(tenant, receiver: Receiver, count: int, gap: float = 0.05) -> list[float]:
    start = len(receiver.received)
    sent: dict[str, float] = {}
    for budget in budgets(tenant, count):
        sent[budget.pk] = announce(tenant, budget)
        time.sleep(gap)
    got = receiver.wait_for(start + count, timeout=120)[start:]
    deadline = time.time() + 30
    while any(not r.answered_at for r in got) and time.time() < deadline:
        time.sleep(0.05)
    found = []
    for received in got:
        budget_id = json.loads(received.body)["data"]["budget_id"]
        found.append(received.answered_at - sent[budget_id])
    if len(found) < count:
        raise SystemExit(f"only {len(found)} of {count} alerts arrived within 120 s")
    return found


def flood(tenant, count: int) -> None:
    from agent33.tenancy.context import tenant_scope
    from webhooks.services import alert_emit

    for i in range(count):
        with tenant_scope(tenant):
            alert_emit(tenant_id=tenant.pk, event_type="budget.pending_approval",
                       data={"budget_id": f"flood-{i}", "title": "flood"})


def run(*, alerts: int = 200, flood_size: int = 1000, keep: bool = False) -> list[Figure]:
    database_url = fresh_postgres_database(DB_NAME)
    from cryptography.fernet import Fernet

    env = bench_env(database_url, AGENT33_OUTBOUND_PRIVATE_NETWORKS="127.0.0.1/32",
                    AGENT33_SECRET_KEYS=Fernet.generate_key().decode())
    for name in ("CELERY_BROKER_URL", "REDIS_URL", "CACHE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    setup_django(env)
    figures: list[Figure] = []
    log_path = ROOT / "reports" / "bench-webhooks-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    log = log_path.open("wb")  # closed in the finally below
    try:
        with Receiver() as fast_receiver, Receiver(delay=SLOW_ANSWER_SECONDS) as slow_receiver, \
                job_worker(env, concurrency=4, stdout=log, stderr=log):
            fast = make_tenant("fast", fast_receiver.url)
            slow = make_tenant("slow", slow_receiver.url)
            time.sleep(2)  # the worker is up and has run its start-up schedule
            alone = latencies(fast, fast_receiver, alerts)
            p95_alone = percentile(alone, 95)
            print(f"alone: {alerts} alerts, commit → receiver's 200 p50 "
                  f"{percentile(alone, 50) * 1000:.0f} ms, p95 {p95_alone * 1000:.0f} ms")
            started = time.time()
            filler = threading.Thread(target=flood, args=(slow, flood_size))
            filler.start()
            filler.join()
            print(f"flood: {flood_size} alerts to a receiver answering in "
                  f"{SLOW_ANSWER_SECONDS:g} s queued in {time.time() - started:.1f} s")
            with_flood = latencies(fast, fast_receiver, alerts)
            p95_flood = percentile(with_flood, 95)
            print(f"during the flood: p50 {percentile(with_flood, 50) * 1000:.0f} ms, p95 "
                  f"{p95_flood * 1000:.0f} ms; the slow receiver has answered "
                  f"{len([r for r in slow_receiver.received if r.answered_at])} of "
                  f"{flood_size} so far")
            ratio = p95_flood / p95_alone
            print(f"fast tenant p95 with ÷ without the flood: {ratio:.2f} (target <= 2)")
            figures = [
                Figure("alert p95 commit to receiver 200", p95_alone * 1000, "ms", "< 2000"),
                Figure("alert p95 during another tenant's slow flood", p95_flood * 1000, "ms"),
                Figure("other tenant p95 with / without slow flood", ratio, "ratio", "<= 2"),
            ]
    finally:
        log.close()
        from django.db import connections

        connections.close_all()
        if not keep:
            drop_postgres_database(DB_NAME)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--flood", type=int, default=1000, dest="flood_size")
    parser.add_argument("--smoke", action="store_true", help="40 alerts, a flood of 200")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    if args.smoke:
        args.alerts, args.flood_size = 40, 200
    return 1 if missed(run(alerts=args.alerts, flood_size=args.flood_size, keep=args.keep)) \
        else 0


if __name__ == "__main__":
    sys.exit(main())
