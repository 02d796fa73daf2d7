"""Webhook endpoints, their deliveries and every attempt (DESIGN §8.5).

An endpoint's signing secret is stored encrypted (the provider-key encryption,
multimodal/encryption.py), never in the clear; during a rotation the previous secret is kept,
encrypted, until `previous_secret_expires_at`, and signs beside the new one.

A delivery is one event for one endpoint: its `message_id` (`msg_…`, the `webhook-id`
header) and `body` (the exact bytes signed) never change across its tries. The worker claims
it (pending → sending) with a conditional UPDATE, tries it, and records the attempt and the
next state in one transaction (webhooks/delivery.py).
"""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agent33.ids import PrefixedIdField
from agent33.tenancy.models import TenantOwnedModel

from .choices import DeliveryState, DisabledReason

__all__ = [
    "MAX_ENDPOINTS_PER_TENANT",
    "SpendThresholdCrossing",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "new_message_id",
]

MAX_ENDPOINTS_PER_TENANT = 20
MAX_URL_LENGTH = 2000


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


class WebhookEndpoint(TenantOwnedModel):
    id = PrefixedIdField(prefix="whep")
    url = models.CharField(max_length=MAX_URL_LENGTH)
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The first failed attempt since the last success: 5 days of failures disable it.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=20, choices=DisabledReason.choices,
                                       blank=True, default="", editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Delivery machinery: at most one worker sends to an endpoint at a time (`lease_until`,
    # `lease_token`), and at most one drain job waits in the queue for it (`drain_queued_at`;
    # one older than DRAIN_QUEUED_STALE was lost and no longer counts).
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_token = models.CharField(max_length=32, blank=True, default="", editable=False)
    drain_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="whep_tenant_created"),
            # "Needs attention": endpoints the system disabled (410, 5 days of failures).
            models.Index(fields=["tenant"], name="whep_tenant_auto_disabled",
                         condition=Q(disabled_reason__in=["gone", "failing"])),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(disabled_reason__in=DisabledReason.values),
                                   name="whep_disabled_reason_valid"),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(TenantOwnedModel):
    id = PrefixedIdField(prefix="whdel")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    event_type = models.CharField(max_length=50)
    message_id = models.CharField(max_length=40, default=new_message_id, editable=False)
    body = models.TextField(editable=False)  # the JSON payload exactly as signed and sent
    state = models.CharField(max_length=20, choices=DeliveryState.choices,
                             default=DeliveryState.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="replays")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "endpoint", "created_at"],
                         name="whdel_tenant_endpoint"),
            # What a drain sends next, and what the sweep finds due or stuck.
            models.Index(fields=["tenant", "endpoint", "next_attempt_at"],
                         name="whdel_tenant_due",
                         condition=Q(state__in=["pending", "sending"])),
            models.Index(fields=["next_attempt_at"], name="whdel_due_all",
                         condition=Q(state__in=["pending", "sending"])),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=DeliveryState.values),
                                   name="whdel_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}"


class WebhookAttempt(TenantOwnedModel):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE,
                                 related_name="attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["attempted_at", "id"]
        indexes = [
            models.Index(fields=["tenant", "delivery", "attempted_at"],
                         name="whatt_tenant_delivery"),
        ]

    def __str__(self) -> str:
        return f"{self.status_code or self.error[:40]}"


class SpendThresholdCrossing(TenantOwnedModel):
    """`spend.threshold_crossed` fired for (tenant, UTC day, percent): the unique constraint
    makes "once per day" one INSERT, so two settlements crossing 80 % at once send one alert."""

    day = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    crossed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "threshold"],
                                    name="whspend_once_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.threshold} %"
