from celery import shared_task

from agent33.tenancy.models import Tenant

from .declines import declines_evaluate


@shared_task(name="outcomes.evaluate_declines", acks_late=True)
def evaluate_declines(tenant_id: str, keys: list[list[str]]) -> list[str]:
    """Idempotent: a redelivery re-evaluates, and the one-open-intake rule dedupes."""
    tenant = Tenant.objects.get(pk=tenant_id)
    return declines_evaluate(tenant=tenant, keys=[(metric, domain) for metric, domain in keys])
