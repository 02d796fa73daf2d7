"""The staff Outcomes dashboard (/admin/outcomes/dashboard/): the API's selectors, drawn as
server-rendered SVG charts, limited to the tenants the staff member may see."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from agent33.tenancy.staff import staff_tenants

from . import selectors
from .api.serializers import SeriesSerializer
from .charts import format_number, line_chart
from .choices import METRIC_TYPES, MetricType, TrendDirection
from .models import MAX_LABEL_LENGTH
from .series import SeriesError

__all__ = ["DashboardFilterForm", "dashboard_page", "series_json"]

PAGE_PERMISSION = "outcomes.view_outcomeevent"
RECENT_ON_PAGE = 20
DOMAINS_ON_PAGE = selectors.DEFAULT_DOMAINS_LIMIT
ARROWS = {"improving": "▲", "declining": "▼", "stable": "▶"}


class DashboardFilterForm(forms.Form):
    # Custom messages: the stock one echoes the rejected value back into the page.
    tenant = forms.ChoiceField(
        required=False, error_messages={"invalid_choice": "Not a tenant you can see."}
    )
    domain = forms.ChoiceField(
        required=False, error_messages={"invalid_choice": "This tenant has no such domain."}
    )
    metric = forms.ChoiceField(
        required=False, choices=[("", "All metrics"), *MetricType.choices]
    )
    event_type = forms.CharField(
        required=False, max_length=MAX_LABEL_LENGTH, label="Event type",
        help_text="One event type of the domain (a CTRF test): the charts over time.",
    )
    window = forms.IntegerField(
        required=False, min_value=1, max_value=selectors.MAX_WINDOW,
        widget=forms.NumberInput(attrs={"style": "width: 6em"}),
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, tenants, domains, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].choices = [(t.slug, t.name or t.slug) for t in tenants]
        self.fields["domain"].choices = [("", "All domains"), *((d, d) for d in domains)]

    def clean_event_type(self):
        value = self.cleaned_data.get("event_type", "")
        if "\x00" in value:
            raise forms.ValidationError("Null characters are not allowed.")
        return value

    def clean(self):
        data = super().clean()
        if data.get("event_type") and not data.get("domain"):
            self.add_error("event_type", "Choose the domain too: an event type is kept per "
                                         "domain.")
            data.pop("event_type", None)
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "Must be on or after the start date.")
            data.pop("since", None)  # an inverted range is ignored as a whole
        return data


def _selected_tenant(request, tenants):
    wanted = request.GET.get("tenant", "")
    by_slug = {t.slug: t for t in tenants}
    # A tenant outside the staff member's grants is never shown: fall back to the first.
    return by_slug.get(wanted) or (tenants[0] if tenants else None)


def _clean_or_default(form: forms.Form, name: str, default):
    value = form.cleaned_data.get(name) if hasattr(form, "cleaned_data") else None
    return default if value in (None, "") else value


def _domain_rows(dashboard: selectors.Dashboard, tenant, labels: dict) -> list[dict]:
    """The per-domain table: a cell per metric (None where the domain has none), declining
    cells carrying the intake their decline opened while it is open."""
    rows = []
    for row in dashboard.domains:
        cells = []
        for metric_type in METRIC_TYPES:
            trend = row.trends.get(metric_type)
            if trend is None:
                cells.append(None)
                continue
            intake = dashboard.intakes.get((metric_type, row.domain))
            cells.append({
                "metric_type": metric_type,
                "label": labels[metric_type],
                "direction": trend.direction,
                "arrow": ARROWS[trend.direction],
                "change": f"{trend.change_pct:+.1f}%",
                "sample_size": trend.sample_size,
                "intake": intake if trend.direction == TrendDirection.DECLINING else None,
            })
        rows.append({
            "domain": row.domain,
            "declining": row.declining,
            "cells": cells,
            "url": "?" + urlencode({"tenant": tenant.slug, "domain": row.domain}),
        })
    return rows


def dashboard_page(request):
    if not request.user.has_perm(PAGE_PERMISSION):
        raise PermissionDenied
    tenants = list(staff_tenants(request.user).order_by("slug"))
    tenant = _selected_tenant(request, tenants)
    domains = selectors.domains_list(tenant=tenant) if tenant else []
    data = request.GET.copy()
    if tenant:
        data["tenant"] = tenant.slug
    data.setdefault("window", str(selectors.DEFAULT_WINDOW))
    form = DashboardFilterForm(data, tenants=tenants, domains=domains)
    form.is_valid()  # invalid fields fall back to defaults; their errors are shown
    domain = _clean_or_default(form, "domain", None)
    event_type = _clean_or_default(form, "event_type", "")
    metric = _clean_or_default(form, "metric", "")
    window = _clean_or_default(form, "window", selectors.DEFAULT_WINDOW)
    since_date = _clean_or_default(form, "since", None)
    until_date = _clean_or_default(form, "until", None)
    # Dates are whole UTC days: `until` includes its day.
    since = datetime.combine(since_date, time.min, UTC) if since_date else None
    until = None
    if until_date and until_date < date.max:  # until 9999-12-31 is no limit at all
        until = datetime.combine(until_date + timedelta(days=1), time.min, UTC)

    context = {
        **admin.site.each_context(request),
        "title": "Outcomes dashboard",
        "form": form,
        "tenant": tenant,
        "tenants": tenants,
        "cards": [],
        "window": window,
        "domain": domain or selectors.ALL_DOMAINS,
    }
    if tenant is not None:
        dashboard = selectors.dashboard_get(
            tenant=tenant,
            domain=domain,
            window=window,
            recent_limit=RECENT_ON_PAGE,
            metric_types=[metric] if metric else METRIC_TYPES,
            since=since,
            until=until,
            domains_limit=DOMAINS_ON_PAGE,
        )
        labels = dict(MetricType.choices)
        context["cards"] = [
            {
                "trend": trend,
                "label": labels[trend.metric_type],
                "arrow": ARROWS[trend.direction],
                "change": f"{trend.change_pct:+.1f}%",
                "previous_avg": format_number(trend.previous_avg),
                "current_avg": format_number(trend.current_avg),
                "chart": line_chart(
                    trend.points,
                    previous_avg=trend.previous_avg,
                    current_avg=trend.current_avg,
                ),
            }
            for trend in dashboard.trends
        ]
        context["domain_rows"] = _domain_rows(dashboard, tenant, labels)
        context["domains_limit"] = DOMAINS_ON_PAGE
        context["default_window"] = selectors.DEFAULT_WINDOW
        context["series_metrics"] = [(m, labels[m]) for m in ([metric] if metric
                                                              else METRIC_TYPES)]
        context["event_type"] = event_type
        context["recent_events"] = dashboard.recent_events
        context["summary"] = dashboard.summary
        context["metric_labels"] = labels
        filters = {"tenant": tenant.slug}
        if domain:
            filters["domain"] = domain
        context["events_url"] = (
            reverse("admin:outcomes_outcomeevent_changelist") + "?" + urlencode(filters)
        )
    return TemplateResponse(request, "admin/outcomes/dashboard.html", context)


def series_json(request):
    """The staff twin of GET /v1/outcomes/series for the dashboard's charts over time: the
    same parameters and body, for a tenant the staff member is granted (`tenant`)."""
    if not request.user.has_perm(PAGE_PERMISSION):
        raise PermissionDenied
    from .api.views import series_from_query  # the API's parameter rules, one place

    wanted = request.GET.get("tenant", "")
    tenant = staff_tenants(request.user).filter(slug=wanted).first() if wanted else None
    if tenant is None:
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    labels = {}
    for name in ("domain", "event_type"):
        value = request.GET.get(name) or None
        if value is not None and (len(value) > MAX_LABEL_LENGTH or "\x00" in value):
            return _invalid(name, f"At most {MAX_LABEL_LENGTH} characters, no NUL.")
        labels[name] = value
    try:
        series = series_from_query(tenant, request.GET, **labels)
    except SeriesError as exc:
        return _invalid(exc.field, exc.message)
    return JsonResponse(SeriesSerializer(series).data)


def _invalid(field: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"detail": f"{field}: {message}", "code": "invalid", "errors": {field: [message]}},
        status=400,
    )
