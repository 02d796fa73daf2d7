from __future__ import annotations

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from .choices import MetricType
from .models import OutcomeEvent

__all__ = ["OutcomeEventFilter"]


class _UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time that also exists in UTC: year-1 or year-9999 times with an offset
    would otherwise overflow when the query converts them (a 500)."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is not None:
            try:
                moment.astimezone(UTC)
            except OverflowError:
                raise ValidationError("Out of range.", code="invalid") from None
        return moment


class _UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcDateTimeField


class OutcomeEventFilter(django_filters.FilterSet):
    domain = django_filters.CharFilter(max_length=200)
    event_type = django_filters.CharFilter(max_length=200)
    metric_type = django_filters.ChoiceFilter(choices=MetricType.choices)
    since = _UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", label="occurred_at on or after (ISO 8601)"
    )
    until = _UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", label="occurred_at before (ISO 8601)"
    )
    tenant_id = django_filters.CharFilter(
        field_name="tenant_id", max_length=63, label="Tenant (operator tokens)"
    )

    class Meta:
        model = OutcomeEvent
        fields: list[str] = []  # every filter is declared above
