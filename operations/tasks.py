"""Jobs of operations: the periodic sweep that expires autonomy budgets, the pruning of the
live hub's change log, and batches."""

from __future__ import annotations

from agent33.jobs import job

from . import batches, changelog, services

__all__ = ["expire_budgets", "prune_hub_events", "run_batch"]


@job("operations.tasks.expire_budgets", max_attempts=3, time_limit=300)
def expire_budgets() -> int:
    return len(services.budgets_expire())


@job("operations.tasks.prune_hub_events", max_attempts=3, time_limit=300)
def prune_hub_events() -> int:
    return changelog.prune_events()


# A try that dies (a killed worker) is run again and resumes after the last committed chunk;
# an error inside a try ends the batch `failed` (batches.batch_run), so it is not retried.
@job(batches.JOB_NAME, max_attempts=3, backoff=(2.0,), time_limit=3600)
def run_batch(*, batch_id: str) -> str:
    return batches.batch_run(batch_id)
