"""Admin bases every app builds on: tenant-limited querysets and choices, read-only facts."""

from __future__ import annotations

from django.contrib import admin

from .staff import staff_tenants

__all__ = ["ReadOnlyAdminMixin", "TenantScopedAdmin", "TenantScopedInline"]


class _TenantLimited:
    """Rows come through the model's default manager, which StaffTenantScopeMiddleware has
    scoped to the staff member's tenants; tenant choices are limited the same way."""

    def get_object(self, request, object_id, from_field=None):
        # PostgreSQL refuses NUL in text; an id containing one names no object.
        if object_id is not None and "\x00" in str(object_id):
            return None
        return super().get_object(request, object_id, from_field)

    def get_queryset(self, request):
        queryset = self.model.objects.all()
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = staff_tenants(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TenantScopedAdmin(_TenantLimited, admin.ModelAdmin):
    list_select_related = ()


class TenantScopedInline(_TenantLimited, admin.TabularInline):
    extra = 0


class ReadOnlyAdminMixin:
    """For records that are facts (events, control history): inspect, never edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
