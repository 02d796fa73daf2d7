from __future__ import annotations

import django_filters

from agent33.api.datetimes import UtcDateTimeFilter

from .choices import MetricType
from .models import OutcomeEvent

__all__ = ["OutcomeEventFilter"]


class OutcomeEventFilter(django_filters.FilterSet):
    domain = django_filters.CharFilter(max_length=200)
    event_type = django_filters.CharFilter(max_length=200)
    metric_type = django_filters.ChoiceFilter(choices=MetricType.choices)
    since = UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", label="occurred_at on or after (ISO 8601)"
    )
    until = UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", label="occurred_at before (ISO 8601)"
    )
    tenant_id = django_filters.CharFilter(
        field_name="tenant_id", max_length=63, label="Tenant (operator tokens)"
    )

    class Meta:
        model = OutcomeEvent
        fields: list[str] = []  # every filter is declared above
