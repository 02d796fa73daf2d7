"""Events are facts: read-only in the admin. The Outcomes dashboard is a staff page."""

from __future__ import annotations

from django.contrib import admin

from agent33.admin_site import AdminPage
from agent33.tenancy.admin_base import ReadOnlyAdminMixin, TenantScopedAdmin
from agent33.tenancy.staff import staff_tenants

from .dashboard_page import PAGE_PERMISSION, dashboard_page
from .models import OutcomeCount, OutcomeEvent


def _usable(value: str | None) -> str | None:
    # PostgreSQL refuses NUL in a text parameter; no stored label contains one.
    return value if value and "\x00" not in value else None


class TenantFilter(admin.SimpleListFilter):
    """Only the tenants this staff member may see (the stock related filter would list
    every tenant's name)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(t.slug, t.name or t.slug) for t in staff_tenants(request.user).order_by("slug")]

    def queryset(self, request, queryset):
        value = _usable(self.value())
        return queryset.filter(tenant_id=value) if value else queryset


class DomainFilter(admin.SimpleListFilter):
    """Domains from the per-key counts (a few rows), not a DISTINCT over every event."""

    title = "domain"
    parameter_name = "domain"

    def lookups(self, request, model_admin):
        domains = OutcomeCount.objects.filter(count__gt=0).order_by("domain")
        tenant = _usable(request.GET.get(TenantFilter.parameter_name))
        if tenant:
            domains = domains.filter(tenant_id=tenant)
        return [(d, d) for d in domains.values_list("domain", flat=True).distinct()[:200]]

    def queryset(self, request, queryset):
        value = _usable(self.value())
        return queryset.filter(domain=value) if value else queryset


@admin.register(OutcomeEvent)
class OutcomeEventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "occurred_at", "tenant_label", "metric_type", "domain", "event_type", "value", "id"
    )
    list_display_links = ("occurred_at",)
    list_filter = (TenantFilter, "metric_type", DomainFilter, "occurred_at")
    search_fields = ("=id", "domain", "event_type")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at", "-id")
    # No COUNT(*) over a tenant's whole history per page view, nor one per filter choice.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fields = (
        "id", "tenant", "domain", "event_type", "metric_type", "value", "occurred_at",
        "metadata", "created_at",
    )
    readonly_fields = fields

    def get_object(self, request, object_id, from_field=None):
        if "\x00" in object_id:  # a NUL in a text parameter is a 500 on PostgreSQL
            return None
        return super().get_object(request, object_id, from_field)

    @admin.display(description="tenant", ordering="tenant_id")
    def tenant_label(self, obj: OutcomeEvent) -> str:
        return obj.tenant_id


admin.site.register_page(
    AdminPage(
        route="outcomes/dashboard/",
        view=dashboard_page,
        name="outcomes_dashboard",
        title="Outcomes dashboard",
        app_label="outcomes",
        permission=PAGE_PERMISSION,
    )
)
