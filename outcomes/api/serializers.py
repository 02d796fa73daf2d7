"""Response shapes (DESIGN §5.3) and the request shapes the OpenAPI schema documents.

Requests are validated by outcomes.validation (one lean path for one or 10,000 events), so
the create serializers below describe the body for the schema; they do not validate it.
"""

from __future__ import annotations

from datetime import datetime

from rest_framework import serializers

from ..choices import METRIC_TYPES, MetricType, TrendDirection
from ..ctrf import MAX_NAME_CHARS
from ..models import MAX_LABEL_LENGTH, OutcomeEvent
from ..selectors import DEFAULT_WINDOW
from ..validation import MAX_BULK_EVENTS

__all__ = [
    "BulkCreatedSerializer",
    "CtrfIngestedSerializer",
    "CtrfReportSerializer",
    "DashboardSerializer",
    "DomainRowSerializer",
    "OutcomeEventBulkSerializer",
    "OutcomeEventCreateSerializer",
    "OutcomeEventSerializer",
    "SeriesSerializer",
    "SummarySerializer",
    "TrendSerializer",
]


class OutcomeEventSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    metadata = serializers.DictField(read_only=True)

    class Meta:
        model = OutcomeEvent
        fields = [
            "id",
            "tenant_id",
            "domain",
            "event_type",
            "metric_type",
            "value",
            "occurred_at",
            "metadata",
        ]
        read_only_fields = fields


class OutcomeEventCreateSerializer(serializers.Serializer):
    domain = serializers.CharField(max_length=MAX_LABEL_LENGTH)
    event_type = serializers.CharField(max_length=MAX_LABEL_LENGTH)
    metric_type = serializers.ChoiceField(choices=MetricType.choices)
    value = serializers.FloatField(help_text="A finite number (no NaN, ±Infinity, 1e400).")
    occurred_at = serializers.DateTimeField(
        required=False, help_text="ISO 8601; defaults to now. Without an offset: UTC."
    )
    metadata = serializers.DictField(
        required=False, help_text="A JSON object of at most 16 KB."
    )


class OutcomeEventBulkSerializer(serializers.Serializer):
    events = OutcomeEventCreateSerializer(
        many=True, min_length=1, max_length=MAX_BULK_EVENTS
    )


class BulkCreatedSerializer(serializers.Serializer):
    created = serializers.IntegerField()


class TrendSerializer(serializers.Serializer):
    metric_type = serializers.ChoiceField(choices=MetricType.choices)
    domain = serializers.CharField(help_text='"all" when not filtered by domain.')
    event_type = serializers.CharField(
        allow_null=True, help_text="The event type (a CTRF test) read, or null: every type.")
    window = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=TrendDirection.choices)
    sample_size = serializers.IntegerField()
    values = serializers.ListField(
        child=serializers.FloatField(), help_text="The window's values, oldest first."
    )
    previous_avg = serializers.FloatField()
    current_avg = serializers.FloatField()
    change_pct = serializers.FloatField(help_text="Relative change x 100; positive is better.")

    def to_representation(self, trend):
        # Plain floats throughout; a field per value would cost ~1 ms per 1,000 values.
        return {
            "metric_type": trend.metric_type,
            "domain": trend.domain,
            "event_type": trend.event_type,
            "window": trend.window,
            "direction": trend.direction,
            "sample_size": trend.sample_size,
            "values": trend.values,
            "previous_avg": trend.previous_avg,
            "current_avg": trend.current_avg,
            "change_pct": trend.change_pct,
        }


class DeclineIntakeSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField()
    urgency = serializers.CharField()
    domain = serializers.CharField()


class DashboardTrendSerializer(TrendSerializer):
    intakes = DeclineIntakeSerializer(
        many=True, help_text="Open improvement intakes that declines of this metric opened."
    )

    def to_representation(self, trend):
        return {**super().to_representation(trend), "intakes": list(trend.intakes)}


class MetricCountsSerializer(serializers.Serializer):
    def get_fields(self):
        return {metric: serializers.IntegerField() for metric in METRIC_TYPES}


class SummarySerializer(serializers.Serializer):
    total_events = serializers.IntegerField()
    domains = serializers.ListField(child=serializers.CharField())
    event_types = serializers.ListField(child=serializers.CharField())
    metric_counts = MetricCountsSerializer()


class DomainTrendSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=TrendDirection.choices)
    change_pct = serializers.FloatField(help_text="Relative change x 100; positive is better.")
    sample_size = serializers.IntegerField()


class DomainTrendsSerializer(serializers.Serializer):
    """metric_type -> trend, only for the metrics the domain has."""

    def get_fields(self):
        return {metric: DomainTrendSerializer(required=False) for metric in METRIC_TYPES}


class DomainRowSerializer(serializers.Serializer):
    domain = serializers.CharField()
    trends = DomainTrendsSerializer(
        help_text="Per metric the domain has: its trend over the latest "
        f"{DEFAULT_WINDOW} events, as decline detection last evaluated it."
    )

    def to_representation(self, row):
        return {
            "domain": row.domain,
            "trends": {
                metric_type: {
                    "direction": trend.direction,
                    "change_pct": trend.change_pct,
                    "sample_size": trend.sample_size,
                }
                for metric_type, trend in row.trends.items()
            },
        }


class DashboardSerializer(serializers.Serializer):
    trends = DashboardTrendSerializer(many=True)
    recent_events = OutcomeEventSerializer(many=True)
    summary = SummarySerializer()
    domains = DomainRowSerializer(
        many=True,
        help_text="One row per domain (the `domain` filter's only, if given): domains with a "
        "declining metric first, then by event count, then by name; at most `domains_limit`. "
        f"Trends use decline detection's window ({DEFAULT_WINDOW}) whatever `window` says, "
        "and are as fresh as its last evaluation (after events commit; with a broker, a task "
        "shortly after).",
    )


LAST_MILLISECOND = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

# --- CTRF reports (POST /v1/outcomes/ctrf): the shape the schema documents; outcomes.ctrf
# validates it and names the JSON path of any problem.


class CtrfToolSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=MAX_LABEL_LENGTH, help_text="The default domain is `benchmarks.<name>`."
    )
    version = serializers.CharField(required=False)


class CtrfSummarySerializer(serializers.Serializer):
    tests = serializers.IntegerField(min_value=0)
    passed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    skipped = serializers.IntegerField(min_value=0)
    pending = serializers.IntegerField(min_value=0)
    other = serializers.IntegerField(min_value=0)
    start = serializers.IntegerField(
        min_value=0, max_value=LAST_MILLISECOND,
        help_text="Milliseconds since the Unix epoch; every event's occurred_at.",
    )
    stop = serializers.IntegerField(min_value=0)


class CtrfTestSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=MAX_NAME_CHARS,
        help_text="The events' event_type (longer than 200 characters: cut, with a hash of "
        "the whole name).",
    )
    status = serializers.ChoiceField(
        choices=["passed", "failed", "skipped", "pending", "other"],
        help_text="passed → success_rate 1, failed → 0; the others record nothing.",
    )
    duration = serializers.FloatField(min_value=0, help_text="Milliseconds: the latency_ms event.")
    extra = serializers.DictField(
        required=False, help_text="Kept in both events' metadata (with the metadata limit)."
    )


class CtrfEnvironmentSerializer(serializers.Serializer):
    commit = serializers.CharField(required=False, help_text="Kept in metadata as `commit`.")
    branchName = serializers.CharField(  # CTRF spells it so
        required=False, help_text="Kept in metadata as `branch`."
    )


class CtrfResultsSerializer(serializers.Serializer):
    tool = CtrfToolSerializer()
    summary = CtrfSummarySerializer()
    tests = CtrfTestSerializer(many=True)
    environment = CtrfEnvironmentSerializer(required=False)


class CtrfReportSerializer(serializers.Serializer):
    reportFormat = serializers.ChoiceField(
        choices=["CTRF"], required=False
    )
    specVersion = serializers.CharField(required=False)
    results = CtrfResultsSerializer()


class CtrfIngestedSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Events stored: two per passed or failed test.")
    domain = serializers.CharField()


# --- series over time (GET /v1/outcomes/series) -----------------------------------------------


class SeriesBucketSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The bucket's start, in the requested `tz`.")
    count = serializers.IntegerField()
    avg = serializers.FloatField(allow_null=True, help_text="Exact; null when count is 0.")
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True, help_text="Within 1 % of the exact median.")
    p95 = serializers.FloatField(allow_null=True, help_text="Within 1 % of the exact p95.")


class SeriesSummarySerializer(SeriesBucketSerializer):
    start = None  # the period's own bounds are `from` and `to`


class SeriesPeriodSerializer(serializers.Serializer):
    from_ = serializers.DateTimeField(help_text="The first bucket's start.")
    to = serializers.DateTimeField(help_text="The last bucket's end.")
    summary = SeriesSummarySerializer(help_text="The whole period as one bucket.")
    buckets = SeriesBucketSerializer(many=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return {name: fields[name] for name in ("from", "to", "summary", "buckets")}


def _stats(stats) -> dict:
    return {
        "count": stats.count,
        "avg": stats.avg,
        "min": stats.minimum,
        "max": stats.maximum,
        "p50": stats.p50,
        "p95": stats.p95,
    }


def _period(period, tz) -> dict:
    def local(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, tz).isoformat()

    edges = period.boundaries
    return {
        "from": local(edges[0]),
        "to": local(edges[-1]),
        "summary": _stats(period.summary),
        "buckets": [
            {"start": local(start), **_stats(stats)}
            for start, stats in zip(edges, period.buckets, strict=False)
        ],
    }


class SeriesSerializer(serializers.Serializer):
    metric_type = serializers.ChoiceField(choices=MetricType.choices)
    domain = serializers.CharField(help_text='"all" when not filtered by domain.')
    event_type = serializers.CharField(allow_null=True)
    bucket = serializers.ChoiceField(choices=["minute", "hour", "day", "week"])
    tz = serializers.CharField(help_text="The IANA time zone the buckets are aligned to.")
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()
    summary = SeriesSummarySerializer()
    buckets = SeriesBucketSerializer(many=True)
    previous = SeriesPeriodSerializer(
        required=False, help_text="With compare=previous: as many buckets right before."
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def to_representation(self, series):
        body = {
            "metric_type": series.metric_type,
            "domain": series.domain,
            "event_type": series.event_type,
            "bucket": series.bucket,
            "tz": series.tz.key,
            **_period(series.current, series.tz),
        }
        if series.previous is not None:
            body["previous"] = _period(series.previous, series.tz)
        return body
