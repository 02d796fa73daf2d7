"""Outcome events (facts, never edited) and the per-key counts that summarise them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agent33.ids import PrefixedIdField
from agent33.tenancy.models import TenantOwnedModel

from .choices import METRIC_TYPES, MetricType

__all__ = ["MAX_LABEL_LENGTH", "MAX_METADATA_BYTES", "OutcomeCount", "OutcomeEvent"]

MAX_LABEL_LENGTH = 200  # domain and event_type
MAX_METADATA_BYTES = 16 * 1024


class OutcomeEvent(TenantOwnedModel):
    """One measured outcome: what an agent achieved in a domain, at a time.

    Written only through outcomes.services (event_record / event_record_bulk).
    """

    id = PrefixedIdField(prefix="outcome")
    domain = models.CharField(max_length=MAX_LABEL_LENGTH)
    event_type = models.CharField(max_length=MAX_LABEL_LENGTH)
    metric_type = models.CharField(max_length=32, choices=MetricType.choices)
    value = models.FloatField()
    occurred_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        # Every index leads with tenant and ends with (occurred_at, id): "the latest N by
        # occurred_at, ties broken by id" is then a backward index scan with a LIMIT, for the
        # trend (metric, optionally domain), the list and the dashboard's recent events.
        indexes = [
            models.Index(fields=["tenant", "occurred_at", "id"], name="outcome_tenant_time"),
            models.Index(
                fields=["tenant", "metric_type", "occurred_at", "id"],
                name="outcome_tenant_metric_time",
            ),
            models.Index(
                fields=["tenant", "metric_type", "domain", "occurred_at", "id"],
                name="outcome_tenant_metric_dom_time",
            ),
            models.Index(
                fields=["tenant", "domain", "occurred_at", "id"], name="outcome_tenant_dom_time"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(metric_type__in=METRIC_TYPES), name="outcome_metric_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric_type}={self.value:g} ({self.domain}/{self.event_type})"


class OutcomeCount(TenantOwnedModel):
    """How many events a tenant has per (metric, domain, event type).

    The services keep it in the same transaction as the events they insert, so the
    dashboard summary reads a handful of rows instead of counting millions of events.
    `manage.py outcomes_rebuild_counts` recomputes it from the events.
    """

    metric_type = models.CharField(max_length=32, choices=MetricType.choices)
    domain = models.CharField(max_length=MAX_LABEL_LENGTH)
    event_type = models.CharField(max_length=MAX_LABEL_LENGTH)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "metric_type", "domain", "event_type"],
                name="outcome_count_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric_type}/{self.domain}/{self.event_type}: {self.count}"
