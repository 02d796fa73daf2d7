"""Jobs of outcomes: decline evaluations too large to run before a response."""

from agent33.jobs import job
from agent33.tenancy.context import current_scope

from . import declines, services


@job("outcomes.evaluate_declines", max_attempts=5, time_limit=600)
def evaluate_declines(*, keys: list[list[str]]) -> list[str]:
    """Evaluate these trend keys of the job's tenant (snapshots, declines): (metric,
    domain), or for a CTRF test (metric, domain, event type). Idempotent: a second run
    re-evaluates, and the one-open-intake rule keeps one intake per decline."""
    return declines.declines_evaluate(tenant=current_scope(), keys=[tuple(key) for key in keys])


@job("outcomes.purge_expired_events", max_attempts=3, time_limit=600)
def purge_expired_events() -> int:
    """Raw events past AGENT33_EVENT_RETENTION_DAYS (every 10 minutes); rollups stay."""
    return services.events_purge_expired()
