"""A tenant's multimodal policy: its limits on requests and artifacts (DESIGN §5.2).

Both functions read and write through the tenant-scoped manager, so they run in the caller's
tenant scope (the API's token, the admin's staff scope) and fail closed without one.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agent33.errors import InvalidInput
from agent33.tenancy.models import Tenant

from ..models import MultimodalPolicy

__all__ = ["POLICY_FIELDS", "policy_for", "policy_set"]

POLICY_FIELDS = ("max_text_chars", "max_artifact_bytes", "max_timeout_seconds",
                 "allowed_modalities", "daily_spend_limit_usd", "max_storage_bytes")


def policy_for(tenant: Tenant) -> MultimodalPolicy:
    """The tenant's policy, or an unsaved one holding the defaults if none was set."""
    # [:1], not get(): most tenants never set a policy, and raising DoesNotExist on every
    # request's path costs more than the query.
    for policy in MultimodalPolicy.objects.filter(tenant_id=tenant.pk)[:1]:
        return policy
    return MultimodalPolicy(tenant=tenant)


def policy_set(*, tenant: Tenant, actor: str, values: dict[str, Any]) -> MultimodalPolicy:
    """Set some or all policy values; the others keep their current (or default) value."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown policy fields: {', '.join(sorted(unknown))}.",
                           field=sorted(unknown)[0])
    with transaction.atomic():
        try:
            with transaction.atomic():
                MultimodalPolicy.objects.get_or_create(tenant=tenant)
        except IntegrityError:
            pass  # created concurrently by another caller; the row exists now either way
        # Lock the row: two admins setting different fields must not overwrite each other.
        policy = MultimodalPolicy.objects.select_for_update(no_key=True).get(tenant=tenant)
        for name, value in values.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.updated_by = actor
        policy.full_clean(exclude=["tenant"], validate_constraints=False)
        policy.save(update_fields=[*values, "updated_at", "updated_by"])
    return policy
