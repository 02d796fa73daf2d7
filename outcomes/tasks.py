from celery import shared_task

from agent33.tenancy.models import Tenant

from . import services
from .declines import declines_evaluate


@shared_task(name="outcomes.evaluate_declines", acks_late=True)
def evaluate_declines(tenant_id: str, keys: list[list[str]]) -> list[str]:
    """Idempotent: a redelivery re-evaluates, and the one-open-intake rule dedupes."""
    tenant = Tenant.objects.get(pk=tenant_id)
    # (metric, domain) or, for a CTRF test, (metric, domain, event type).
    return declines_evaluate(tenant=tenant, keys=[tuple(key) for key in keys])


@shared_task(name="outcomes.purge_expired_events")
def purge_expired_events() -> int:
    """Raw events past AGENT33_EVENT_RETENTION_DAYS (beat: every 10 minutes)."""
    return services.events_purge_expired()
