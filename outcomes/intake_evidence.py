"""The evidence of a decline on the improvement intake it opened (DESIGN §8.6): which metric,
domain and test declined, its previous and current averages as they are now, its daily
series from the rollups, and a link to the dashboard filtered to it. Registered on
operations' intake page (operations.admin.register_intake_panel)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from agent33.tenancy.context import tenant_scope

from . import selectors
from .charts import format_number, line_chart
from .choices import METRIC_TYPES
from .models import OutcomeCount
from .series import zone

__all__ = ["decline_evidence", "decline_subject"]

SERIES_DAYS = 30


def decline_subject(tenant, decline_key: str) -> tuple[str, str, str | None] | None:
    """(metric_type, domain, event_type or None) of a decline key (`<metric>:<scope>`, the
    scope a domain or `<domain> > <test>`, outcomes.declines.decline_scope), resolved
    against the tenant's recorded keys; None when nothing recorded matches (a scope cut
    with a digest, or events since removed and counted down to none)."""
    metric_type, _, scope = decline_key.partition(":")
    if metric_type not in METRIC_TYPES or not scope:
        return None
    counts = OutcomeCount.objects.filter(tenant=tenant, metric_type=metric_type)
    if counts.filter(domain=scope).exists():
        return metric_type, scope, None
    position = scope.find(" > ")
    while position != -1:
        domain, event_type = scope[:position], scope[position + 3:]
        if counts.filter(domain=domain, event_type=event_type).exists():
            return metric_type, domain, event_type
        position = scope.find(" > ", position + 1)
    return None


def decline_evidence(intake) -> str | None:
    if not intake.decline_key:
        return None
    with tenant_scope(intake.tenant):
        subject = decline_subject(intake.tenant, intake.decline_key)
        if subject is None:
            return render_to_string("admin/outcomes/decline_evidence.html",
                                    {"missing": True, "key": intake.decline_key})
        metric_type, domain, event_type = subject
        trend = selectors.trend_get(tenant=intake.tenant, metric_type=metric_type,
                                    domain=domain, event_type=event_type)
        now = timezone.now()
        series = selectors.series_get(
            tenant=intake.tenant, metric_type=metric_type, domain=domain,
            event_type=event_type, bucket="day", tz=zone("UTC"),
            start=now - timedelta(days=SERIES_DAYS - 1), end=now,
        )
    days = [
        (datetime.fromtimestamp(start, UTC), stats.avg)
        for start, stats in zip(series.current.boundaries, series.current.buckets,
                                strict=False)
        if stats.count
    ]
    query = {"tenant": intake.tenant_id, "domain": domain, "metric": metric_type}
    if event_type:
        query["event_type"] = event_type
    return render_to_string("admin/outcomes/decline_evidence.html", {
        "metric_type": metric_type,
        "domain": domain,
        "event_type": event_type,
        "trend": trend,
        "previous_avg": format_number(trend.previous_avg),
        "current_avg": format_number(trend.current_avg),
        "change": f"{trend.change_pct:+.1f}%",
        "trend_chart": line_chart(trend.points, previous_avg=trend.previous_avg,
                                  current_avg=trend.current_avg),
        "days": days,
        "series_days": SERIES_DAYS,
        "day_summary": series.current.summary,
        "dashboard_url": reverse("admin:outcomes_dashboard") + "?" + urlencode(query),
    })
