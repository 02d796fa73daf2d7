"""A tenant's multimodal policy: its limits on requests and artifacts (DESIGN §5.2).

Both functions read and write through the tenant-scoped manager, so they run in the caller's
tenant scope (the API's token, the admin's staff scope) and fail closed without one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agent33.errors import Forbidden, InvalidInput
from agent33.tenancy.models import Tenant

from ..models import MultimodalPolicy
from ..pricing import format_usd

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


def policy_set(*, tenant: Tenant, actor: str, values: dict[str, Any],
               may_loosen_limits: bool = False) -> MultimodalPolicy:
    """Set some or all policy values; the others keep their current (or default) value.

    The daily spend limit and the artifact storage quota guard the platform's money and
    disks as much as the tenant's: only a caller with `may_loosen_limits` (an operator
    token, staff) raises or removes them. Anyone else (a tenant's own multimodal:admin
    token) may lower them, or set a spend limit where there is none, which only holds the
    tenant tighter: 403 `spend_limit_operator_only` / `storage_quota_operator_only`
    otherwise.
    """
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
        if not may_loosen_limits:
            # Checked on the locked row: an operator's change committed meanwhile counts.
            if "daily_spend_limit_usd" in values:
                _refuse_loosening(policy.daily_spend_limit_usd, values["daily_spend_limit_usd"])
            if values.get("max_storage_bytes", 0) > policy.max_storage_bytes:
                raise Forbidden(
                    f"The artifact storage quota is {policy.max_storage_bytes} bytes; only an "
                    "operator token or staff may raise it. A tenant's token may lower it.",
                    code="storage_quota_operator_only", field="max_storage_bytes",
                )
        for name, value in values.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.updated_by = actor
        policy.full_clean(exclude=["tenant"], validate_constraints=False)
        policy.save(update_fields=[*values, "updated_at", "updated_by"])
    return policy


def _refuse_loosening(current: Decimal | None, wanted: Decimal | None) -> None:
    if current is None or (wanted is not None and wanted <= current):
        return
    what = "remove" if wanted is None else f"raise it to {format_usd(wanted)}"
    raise Forbidden(
        f"The daily spend limit is {format_usd(current)} USD; only an operator token or "
        f"staff may {what}. A tenant's token may lower it.",
        code="spend_limit_operator_only", field="daily_spend_limit_usd",
    )
