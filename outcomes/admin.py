"""Events are facts: read-only in the admin. The Outcomes dashboard is a staff page."""

from __future__ import annotations

from django.contrib import admin

from agent33.admin_site import AdminPage
from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    usable_param,
)
from operations.admin import register_intake_panel  # the apps' public seam

from .dashboard_page import PAGE_PERMISSION, dashboard_page, series_json
from .intake_evidence import decline_evidence
from .models import OutcomeCount, OutcomeEvent


class DomainFilter(admin.SimpleListFilter):
    """Domains from the per-key counts (a few rows), not a DISTINCT over every event."""

    title = "domain"
    parameter_name = "domain"

    def lookups(self, request, model_admin):
        domains = OutcomeCount.objects.filter(count__gt=0).order_by("domain")
        tenant = usable_param(request.GET.get(StaffTenantFilter.parameter_name))
        if tenant:
            domains = domains.filter(tenant_id=tenant)
        return [(d, d) for d in domains.values_list("domain", flat=True).distinct()[:200]]

    def queryset(self, request, queryset):
        value = usable_param(self.value())
        return queryset.filter(domain=value) if value else queryset


@admin.register(OutcomeEvent)
class OutcomeEventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "occurred_at", "tenant_label", "metric_type", "domain", "event_type", "value", "id"
    )
    list_display_links = ("occurred_at",)
    list_filter = (StaffTenantFilter, "metric_type", DomainFilter, "occurred_at")
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
admin.site.register_page(
    AdminPage(
        route="outcomes/dashboard/series/",
        view=series_json,
        name="outcomes_dashboard_series",
        title="Outcomes series (JSON)",
        app_label="outcomes",
        permission=PAGE_PERMISSION,
        in_index=False,
    )
)

register_intake_panel(decline_evidence)
