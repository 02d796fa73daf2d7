"""Reads of webhooks beyond a plain lookup: the hub's "Needs attention" entry."""

from __future__ import annotations

from django.urls import reverse

from operations.hub import AttentionItem

from .choices import DisabledReason
from .models import WebhookEndpoint

__all__ = ["AUTO_DISABLED", "auto_disabled_item"]

AUTO_DISABLED = (DisabledReason.GONE, DisabledReason.FAILING)


def auto_disabled_item() -> AttentionItem:
    """Endpoints the system disabled (410 Gone, or 5 days of failures): alerts stopped
    reaching someone, and nobody chose that."""
    return AttentionItem(
        key="webhooks-disabled",
        label="Webhook endpoints disabled by failures",
        count=lambda: WebhookEndpoint.objects.filter(
            disabled_reason__in=AUTO_DISABLED).count(),
        list_url=lambda: reverse("admin:webhooks_webhookendpoint_changelist")
        + "?disabled_reason__in=gone,failing",
    )
