"""Managers for tenant-owned models: the default one fails closed without a tenant scope."""

from __future__ import annotations

from django.db import models

from .context import ALL_TENANTS, TenantSet, current_scope

__all__ = ["AllTenantsManager", "TenantScopedManager"]


class TenantScopedManager(models.Manager):
    """Default manager (declared first, so DRF, filters and related managers use it).

    Every queryset is filtered to the current tenant; with no scope set it raises
    TenantScopeMissing instead of returning every tenant's rows.
    """

    def get_queryset(self) -> models.QuerySet:
        scope = current_scope()
        queryset = super().get_queryset()
        if scope is ALL_TENANTS:
            return queryset
        if isinstance(scope, TenantSet):
            return queryset.filter(tenant_id__in=scope)
        return queryset.filter(tenant=scope)


class AllTenantsManager(models.Manager):
    """The explicit, greppable escape hatch: admin, commands, operator code paths."""
