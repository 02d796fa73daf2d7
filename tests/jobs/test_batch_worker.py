"""A batch run by a real `manage.py worker` on a migrated database of this pass's kind: the
worker is SIGKILLed after some chunks committed, and the next worker resumes the batch after
the last committed chunk, so every workflow run is paused exactly once (one history row
each, path `batch`)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.jobs.conftest import children_of, query, run_manage
from tests.jobs.test_worker_processes import start_worker
from tests.workers import wait_for

pytestmark = pytest.mark.slow

RUNS = 1000

SETUP = f"""
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from operations import batches
from operations.models import WorkflowRun
from operations.transitions import Origin
tenant = Tenant.objects.get(pk="acme")
WorkflowRun.all_tenants.bulk_create(
    [WorkflowRun(tenant=tenant, workflow_name=f"w{{n}}", status="running")
     for n in range({RUNS})], batch_size=500)
with tenant_scope(tenant):
    batch = batches.batch_create(
        tenant=tenant, action="pause", filter={{"include": "workflows"}}, reason="drain",
        origin=Origin(actor="token:probe", path="batch", scopes=frozenset({{"admin"}})))
out = batch.pk
"""

STATE = """
from collections import Counter
from operations.models import Batch, StatusChange, WorkflowRun
batch = Batch.all_tenants.get()
out = {"state": batch.state, "position": batch.position, "done": batch.done,
       "skipped": batch.skipped, "failed": batch.failed,
       "runs": dict(Counter(WorkflowRun.all_tenants.values_list("status", flat=True))),
       "history": StatusChange.all_tenants.filter(path="batch", reason="drain").count(),
       "most_per_run": max(Counter(StatusChange.all_tenants.values_list(
           "process_id", flat=True)).values(), default=0)}
"""


def test_a_killed_worker_resumes_the_batch_without_applying_anything_twice(embedded_env,
                                                                           tmp_path):
    env = embedded_env
    run_manage(env, "create_tenant", "acme")
    batch_id = query(env, SETUP)
    assert batch_id.startswith("batch-")
    log = tmp_path / "worker.log"
    # 1,000 runs are 5 chunks of 200; each chunk takes 2 s more in this worker.
    worker = start_worker(env, log, AGENT33_TEST_SLOW_BATCH_CHUNK_SECONDS="2")
    try:
        wait_for(lambda: query(env, STATE)["position"] >= 200, timeout=60,
                 message="the first chunk to commit")
        for pid in [worker.pid, *children_of(worker.pid)]:
            os.kill(pid, signal.SIGKILL)
        worker.wait()
        killed = query(env, STATE)
        assert killed["state"] == "running"
        assert 200 <= killed["position"] < RUNS
        assert killed["runs"]["paused"] == killed["done"] == killed["position"]

        worker = start_worker(env, log)
        done = wait_for(lambda: (state := query(env, STATE))["state"] == "completed"
                        and state, timeout=120, message="the batch to complete")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert (done["done"], done["skipped"], done["failed"]) == (RUNS, 0, 0)
    assert done["runs"] == {"paused": RUNS}
    assert done["history"] == RUNS and done["most_per_run"] == 1
