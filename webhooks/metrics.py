"""Webhooks' series for GET /metrics: endpoints by state and deliveries waiting for a try,
read from small indexed sets (at most 20 endpoints per tenant; the partial index of
unfinished deliveries), so a scrape costs the same whatever the delivery history."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .choices import DeliveryState
from .models import WebhookDelivery, WebhookEndpoint

__all__ = ["collect"]


def collect() -> Iterator[Metric]:
    endpoints = GaugeMetricFamily(
        "agent33_webhook_endpoints",
        "Webhook endpoints, every tenant: enabled, or disabled and why (by_user, gone, "
        "failing).", labels=["state"])
    counts = {"enabled": 0, "by_user": 0, "gone": 0, "failing": 0}
    for enabled, reason, total in (WebhookEndpoint.all_tenants.values_list(
            "enabled", "disabled_reason").annotate(total=Count("*")).order_by()):
        key = "enabled" if enabled else (reason or "by_user")
        counts[key] = counts.get(key, 0) + total
    for state, total in counts.items():
        endpoints.add_metric([state], total)
    yield endpoints
    waiting = GaugeMetricFamily(
        "agent33_webhook_deliveries_unfinished",
        "Webhook deliveries waiting for a try or being tried, every tenant.", labels=["state"])
    found = dict(WebhookDelivery.all_tenants.filter(
        state__in=[DeliveryState.PENDING, DeliveryState.SENDING]).values_list("state")
        .annotate(total=Count("*")).order_by())
    for state in (DeliveryState.PENDING, DeliveryState.SENDING):
        waiting.add_metric([state.value], found.get(state.value, 0))
    yield waiting
