"""The staff Operations Hub page (/admin/operations/hub/, DESIGN §6).

One route, three uses, all behind the admin login and the staff tenant scope that
StaffTenantScopeMiddleware sets (superusers: every tenant; other staff: granted ones):
- GET            → the HTML page (a table filled and refreshed by static/operations/hub.js);
- GET ?format=json → the hub as JSON, from the same selector as GET /v1/operations/hub;
Beside it, /admin/operations/hub/stream/ (`hub_stream`) is the live hub's event stream for
the page, the same as GET /v1/operations/hub/stream (operations/stream.py), in the staff
member's tenant scope: its own path, so a proxy can send streams to the ASGI process.
- POST (JSON)    → a control, through the same service as the API's control endpoint.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from agent33.api.exceptions import error_body
from agent33.errors import DomainError
from agent33.tenancy.context import current_scope

from . import controls, selectors, stream
from .choices import CONTROL_ACTIONS, ChangeCause, ChangePath
from .hub import attention_items, hub_panels, registered_sources
from .transitions import CONTROL_PERMISSION, origin_of

__all__ = ["VIEW_PERMISSION", "hub_page", "hub_stream"]

VIEW_PERMISSION = "operations.view_workflowrun"
REFRESH_MS = 1500


def hub_page(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        return _control(request)
    if request.GET.get("format") == "json":
        return _data(request)
    return _page(request)


def _json_error(exc: DomainError) -> JsonResponse:
    return JsonResponse(error_body(exc.detail, exc.code), status=exc.status_code)


def _render_panels(request: HttpRequest) -> dict[str, str]:
    """"Needs attention" and other apps' panels (operations.hub.register_hub_panel), as
    trusted HTML, refreshed with the table."""
    return {
        "attention": _render_attention(),
        **{key: render(request) for key, render in hub_panels().items()},
    }


def _render_attention() -> str:
    """What waits for a person, in the staff member's tenant scope: a count per item and a
    link to the admin list filtered to those rows."""
    items = [
        {"key": item.key, "label": item.label, "count": item.count(), "url": item.list_url()}
        for item in attention_items()
    ]
    return render_to_string("operations/attention_panel.html", {"items": items})


def _data(request: HttpRequest) -> JsonResponse:
    try:
        query = selectors.parse_hub_query(request.GET)
    except DomainError as exc:
        return _json_error(exc)
    if request.GET.get("panels") == "only":  # the live page: panels after a streamed change
        return JsonResponse({"panels": _render_panels(request)})
    snapshot = selectors.hub_snapshot(query)
    if request.GET.get("panels") == "1":  # the page refreshes its panels with the table
        snapshot["panels"] = _render_panels(request)
    return JsonResponse(snapshot)


def hub_stream(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    try:
        query = selectors.parse_hub_query(request.GET)
        return stream.stream_response(request, scope=current_scope(), query=query)
    except DomainError as exc:
        response = _json_error(exc)
        for name, value in exc.headers.items():
            response[name] = value
        return response


def _control(request: HttpRequest) -> JsonResponse:
    if not request.user.has_perm(CONTROL_PERMISSION):
        return JsonResponse(
            error_body("You may not control processes.", "permission_denied"), status=403
        )
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse(error_body("Body must be JSON.", "parse_error"), status=400)
    if not isinstance(body, dict):
        return JsonResponse(error_body("Body must be a JSON object.", "parse_error"), status=400)
    fields = {name: body.get(name, "") for name in ("process_id", "action", "reason")}
    for name, value in fields.items():
        if not isinstance(value, str):
            return JsonResponse(error_body(f"{name} must be a string.", "invalid"), status=400)
    try:
        process = controls.process_control(
            process_id=fields["process_id"],
            action=fields["action"],
            reason=fields["reason"],
            origin=origin_of(request, path=ChangePath.HUB, cause=ChangeCause.OPERATOR),
        )
    except DomainError as exc:
        return _json_error(exc)
    return JsonResponse({"process": process})


def _page(request: HttpRequest) -> TemplateResponse:
    from django.contrib import admin

    sources = registered_sources()
    rendered = {
        key: mark_safe(html)  # noqa: S308 - panels build their HTML with format_html/templates
        for key, html in _render_panels(request).items()
    }
    context = {
        **admin.site.each_context(request),
        "title": "Operations Hub",
        "types": [(s.include_key, s.type_name) for s in sources],
        "statuses": sorted({status for s in sources for status in s.statuses}),
        "actions": CONTROL_ACTIONS,
        "can_control": request.user.has_perm(CONTROL_PERMISSION),
        "refresh_ms": REFRESH_MS,
        # What "not finished" means per type, for the rows the live stream brings.
        "active_statuses": {s.type_name: list(s.active_statuses) for s in sources},
        "attention_panel": rendered.pop("attention"),
        "multimodal_panel": rendered.pop("multimodal", None),
        "other_panels": [
            format_html('<section id="{}-panel" class="hub-panel">{}</section>', key, html)
            for key, html in rendered.items()
        ],
    }
    return TemplateResponse(request, "operations/hub.html", context)
