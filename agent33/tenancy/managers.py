"""Managers for tenant-owned models: the default one fails closed without a tenant scope."""

from __future__ import annotations

from django.db import models

from .context import ALL_TENANTS, TenantScopeMissing, TenantSet, current_scope, has_scope

__all__ = ["AllTenantsManager", "TenantScopedManager"]


class _RequireTenantScope(models.Expression):
    """A filter that cannot be compiled: a queryset built with no tenant scope raises when it
    is run, not when it is built. Building must work because libraries introspect querysets
    at import time (django-filter), long before any request sets a tenant."""

    output_field = models.BooleanField()
    conditional = True

    def as_sql(self, compiler, connection):
        current_scope()  # raises TenantScopeMissing with the explanation
        raise TenantScopeMissing("This queryset was built outside any tenant scope.")


class TenantScopedManager(models.Manager):
    """Default manager (declared first, so DRF, filters and related managers use it).

    Every queryset is filtered to the current tenant (or the staff member's tenants); with no
    scope set, the queryset raises TenantScopeMissing when run instead of returning every
    tenant's rows.
    """

    def get_queryset(self) -> models.QuerySet:
        queryset = super().get_queryset()
        if not has_scope():
            return queryset.filter(_RequireTenantScope())
        scope = current_scope()
        if scope is ALL_TENANTS:
            return queryset
        if isinstance(scope, TenantSet):
            return queryset.filter(tenant_id__in=scope)
        return queryset.filter(tenant=scope)


class AllTenantsManager(models.Manager):
    """The explicit, greppable escape hatch: admin, commands, operator code paths."""
