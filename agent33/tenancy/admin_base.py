"""Admin bases every app builds on: tenant-limited querysets and choices, read-only facts."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.contrib import admin, messages

from agent33.errors import DomainError

from .staff import staff_tenants

__all__ = [
    "ReadOnlyAdminMixin",
    "StaffTenantFilter",
    "TenantScopedAdmin",
    "TenantScopedInline",
    "apply_service_to_each",
    "usable_param",
]


def usable_param(value: str | None) -> str | None:
    """A query parameter fit for a filter: PostgreSQL refuses NUL in text, and no stored
    value contains one."""
    return value if value and "\x00" not in value else None


class StaffTenantFilter(admin.SimpleListFilter):
    """A tenant filter listing only the tenants this staff member may see (the stock related
    filter would list every tenant's name)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(t.slug, t.name or t.slug) for t in staff_tenants(request.user).order_by("slug")]

    def queryset(self, request, queryset):
        value = usable_param(self.value())
        return queryset.filter(tenant_id=value) if value else queryset


class _TenantLimited:
    """Rows come through the model's default manager, which StaffTenantScopeMiddleware has
    scoped to the staff member's tenants; tenant choices are limited the same way."""

    def get_object(self, request, object_id, from_field=None):
        if object_id is not None and usable_param(str(object_id)) is None:
            return None  # an id with a NUL names no object (and PostgreSQL would refuse it)
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


def apply_service_to_each(
    modeladmin, request, items: Iterable, call: Callable, *, done_message: str
) -> None:
    """An admin action's loop: call the same service the API calls for each selected item,
    report how many succeeded and, one line each, why the others were refused (a 409 in the
    API). `done_message` is formatted with `count`."""
    done = 0
    refused: list[str] = []
    for item in items:
        try:
            call(item)
        except DomainError as exc:
            refused.append(f"Skipped {getattr(item, 'pk', item)}: {exc.detail}")
        else:
            done += 1
    if done:
        modeladmin.message_user(request, done_message.format(count=done), messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, line, messages.WARNING)
