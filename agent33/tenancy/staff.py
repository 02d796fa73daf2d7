"""Which tenants a staff member may see: all for superusers, else guardian grants."""

from __future__ import annotations

from guardian.shortcuts import get_objects_for_user

from .context import ALL_TENANTS, TenantSet
from .models import Tenant

__all__ = ["ACCESS_TENANT_PERM", "staff_scope", "staff_tenants"]

ACCESS_TENANT_PERM = "tenancy.access_tenant"


def staff_tenants(user):
    """Queryset of the tenants a staff user may see."""
    if user.is_superuser:
        return Tenant.objects.all()
    return get_objects_for_user(
        user, ACCESS_TENANT_PERM, klass=Tenant, accept_global_perms=False, with_superuser=False
    )


def staff_scope(user):
    """The tenant scope for a staff request: everything, or exactly the granted tenants."""
    if user.is_superuser:
        return ALL_TENANTS
    return TenantSet(staff_tenants(user).values_list("slug", flat=True))
