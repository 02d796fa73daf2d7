"""Jobs of outcomes: decline evaluations too large to run before a response."""

from agent33.jobs import job
from agent33.tenancy.context import current_scope

from . import declines


@job("outcomes.evaluate_declines", max_attempts=5, time_limit=600)
def evaluate_declines(*, keys: list[list[str]]) -> list[str]:
    """Evaluate these trend keys of the job's tenant (snapshots, declines). Idempotent: a
    second run re-evaluates, and the one-open-intake rule keeps one intake per decline."""
    return declines.declines_evaluate(tenant=current_scope(),
                             keys=[(metric, domain) for metric, domain in keys])
