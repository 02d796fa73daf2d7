"""Outcome events (facts, never edited), the per-key counts that summarise them, and the
latest evaluation of each (metric, domain) trend."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agent33.ids import PrefixedIdField
from agent33.tenancy.models import TenantOwnedModel

from .choices import METRIC_TYPES, MetricType, TrendDirection

__all__ = [
    "ANY",
    "MAX_LABEL_LENGTH",
    "MAX_METADATA_BYTES",
    "OutcomeCount",
    "OutcomeEvent",
    "OutcomeRollup",
    "OutcomeTrendSnapshot",
    "RollupSpan",
]

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


class OutcomeTrendSnapshot(TenantOwnedModel):
    """The latest evaluation of one (metric, domain) trend over decline detection's window.

    Decline detection evaluates every (metric, domain) trend that new events touched, after
    they commit, and stores the result here (outcomes.services.trend_snapshots_save);
    `manage.py outcomes_rebuild_counts` recomputes every row. The dashboard's per-domain
    table reads these rows (a few per domain) instead of every domain's events, so it is as
    fresh as the last evaluation.
    """

    metric_type = models.CharField(max_length=32, choices=MetricType.choices)
    domain = models.CharField(max_length=MAX_LABEL_LENGTH)
    direction = models.CharField(max_length=16, choices=TrendDirection.choices)
    change_pct = models.FloatField()
    sample_size = models.PositiveIntegerField()
    previous_avg = models.FloatField()
    current_avg = models.FloatField()
    # Events of this metric in this domain when it was evaluated: ranks the domains table.
    event_count = models.BigIntegerField()
    evaluated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the dashboard's read: a tenant's rows, by domain.
            models.UniqueConstraint(
                fields=["tenant", "domain", "metric_type"], name="outcome_trend_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(metric_type__in=METRIC_TYPES), name="outcome_trend_metric_valid"
            ),
            models.CheckConstraint(
                condition=Q(direction__in=TrendDirection.values),
                name="outcome_trend_direction_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric_type}/{self.domain}: {self.direction} ({self.change_pct:+.1f}%)"


# A rollup key's domain or event type for "every one" (a label can never be blank).
ANY = ""


class RollupSpan(models.IntegerChoices):
    """The stored bucket lengths, in seconds, aligned to UTC. A series bucket in any time zone
    is a run of whole days, hours and minutes (outcomes.rollups.cover)."""

    MINUTE = 60, "minute"
    HOUR = 3_600, "hour"
    DAY = 86_400, "day"


class OutcomeRollup(TenantOwnedModel):
    """The events of one key in one UTC-aligned minute, hour or day, summarised: exact count,
    sum, min and max, and a mergeable quantile sketch (outcomes.sketches).

    Keys are kept at three levels, so no series merges more than its own buckets' rows:
    (metric, domain, event type), (metric, domain, ANY) and (metric, ANY, ANY). The services
    write them in the events' transaction (outcomes.rollups.rollups_add); retention removes
    raw events but never rollups, so old periods still answer.
    """

    metric_type = models.CharField(max_length=32, choices=MetricType.choices)
    domain = models.CharField(max_length=MAX_LABEL_LENGTH, blank=True)  # ANY: every domain
    event_type = models.CharField(max_length=MAX_LABEL_LENGTH, blank=True)  # ANY: every type
    span = models.IntegerField(choices=RollupSpan.choices)
    bucket_start = models.DateTimeField()
    count = models.BigIntegerField()
    total = models.FloatField()
    minimum = models.FloatField()
    maximum = models.FloatField()
    sketch = models.BinaryField()
    # The last transaction that inserted this row: tells a writer which rows it created
    # (already complete) from the ones it found and must merge into (rollups_add).
    writer = models.BigIntegerField(editable=False)

    class Meta:
        constraints = [
            # Also the series' index: one key, one span, a range of bucket starts.
            models.UniqueConstraint(
                fields=["tenant", "metric_type", "domain", "event_type", "span", "bucket_start"],
                name="outcome_rollup_key_unique",
            ),
            models.CheckConstraint(
                condition=Q(metric_type__in=METRIC_TYPES), name="outcome_rollup_metric_valid"
            ),
            models.CheckConstraint(
                condition=Q(span__in=RollupSpan.values), name="outcome_rollup_span_valid"
            ),
        ]

    def __str__(self) -> str:
        return (f"{self.metric_type}/{self.domain or '*'}/{self.event_type or '*'} "
                f"{self.bucket_start:%Y-%m-%d %H:%M} +{self.span}s: {self.count}")
