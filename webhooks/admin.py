"""Staff views of webhooks (DESIGN §8.5): endpoints (never their secrets), enabled or disabled
through the same service as the API; deliveries with every attempt inline, and a Replay
action (the API's service). Querysets come through the tenant-scoped managers, so staff who
are not superusers see only their granted tenants' rows."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    TenantScopedInline,
    apply_service_to_each,
)

from . import services
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = ["WebhookDeliveryAdmin", "WebhookEndpointAdmin"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("id", "tenant", "url", "event_list", "enabled", "disabled_reason",
                    "failing_since", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("enabled", "disabled_reason", StaffTenantFilter)
    search_fields = ("id", "url", "description")
    ordering = ("-created_at",)
    fields = ("id", "tenant", "url", "event_types", "description", "enabled",
              "disabled_reason", "disabled_at", "failing_since", "previous_secret_expires_at",
              "created_at", "updated_at")
    readonly_fields = fields
    actions = ["enable_endpoints", "disable_endpoints"]

    @admin.display(description="event types")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types)

    def has_change_permission(self, request, obj=None):
        # Pages stay read-only (the secret and URL are the tenant's); the actions need it.
        return request.user.has_perm("webhooks.change_webhookendpoint") if obj is None \
            else False

    @admin.action(description="Enable selected endpoints", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        apply_service_to_each(
            self, request, queryset,
            lambda endpoint: services.endpoint_update(endpoint=endpoint, enabled=True),
            done_message="Enabled {count} endpoint(s).")

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable_endpoints(self, request, queryset):
        apply_service_to_each(
            self, request, queryset,
            lambda endpoint: services.endpoint_update(endpoint=endpoint, enabled=False),
            done_message="Disabled {count} endpoint(s).")


class WebhookAttemptInline(ReadOnlyAdminMixin, TenantScopedInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "duration_ms", "error")
    readonly_fields = fields
    ordering = ("attempted_at",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("id", "tenant", "event_type", "endpoint", "state", "attempt_count",
                    "last_status_code", "next_attempt_at", "created_at")
    list_select_related = ("tenant", "endpoint")
    list_filter = ("state", "event_type", StaffTenantFilter)
    search_fields = ("id", "message_id", "endpoint__id")
    ordering = ("-created_at",)
    fields = ("id", "tenant", "endpoint", "event_type", "message_id", "state",
              "attempt_count", "next_attempt_at", "last_status_code", "last_error",
              "replay_of", "created_at", "finished_at", "payload")
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["replay_deliveries"]

    @admin.display(description="payload")
    def payload(self, obj: WebhookDelivery):
        return format_html("<pre style='margin:0'>{}</pre>",
                           json.dumps(json.loads(obj.body), indent=2))

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("webhooks.change_webhookdelivery") if obj is None \
            else False

    @admin.action(description="Replay selected deliveries", permissions=["change"])
    def replay_deliveries(self, request, queryset):
        apply_service_to_each(
            self, request, queryset.select_related("endpoint"),
            lambda delivery: services.delivery_replay(delivery=delivery),
            done_message="Queued {count} replay(s).")
