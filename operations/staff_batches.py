"""The hub page's batches (/admin/operations/hub/batches/, JSON only; DESIGN §8.4).

Behind the admin login and the staff tenant scope (StaffTenantScopeMiddleware), like the hub
page; creating and cancelling need the same permission as the hub's controls
(`operations.control_process`), and run the same service as the API
(operations/batches.py) with the staff member as the actor:

- GET                 → `{"tenants": [...], "batches": [...]}`: the tenants a batch may be
                        made for (the staff member's) and their 10 latest batches;
- GET ?id=batch-…     → one batch (its progress);
- GET ?counts=1&include=&status=&tenant= → `{"pause": n, "resume": n, "cancel": n}`: the
                        dry-run count of each control for the page's filters, in one
                        request (the page asks once per filter change);
- POST {"action", "filter", "reason", "dry_run", "tenant"} → as POST /v1/operations/batches
  (200 with the count, 202 with the batch). A batch belongs to one tenant: `tenant` names
  it, and may be left out when the staff member has exactly one;
- POST {"cancel": "batch-…"} → as POST /v1/operations/batches/{id}/cancel.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse

from agent33.api.exceptions import error_body
from agent33.errors import DomainError, InvalidInput
from agent33.tenancy.context import ALL_TENANTS, TenantSet, current_scope, tenant_scope
from agent33.tenancy.models import Tenant

from . import batches
from .choices import CONTROL_ACTIONS, ChangeCause, ChangePath
from .models import Batch
from .staff_views import VIEW_PERMISSION
from .transitions import CONTROL_PERMISSION, origin_of

__all__ = ["batches_endpoint"]

RECENT = 10


def batches_endpoint(request: HttpRequest) -> JsonResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    try:
        if request.method == "POST":
            return _post(request)
        return _get(request)
    except DomainError as exc:
        response = JsonResponse(error_body(exc.detail, exc.code), status=exc.status_code)
        for name, value in exc.headers.items():
            response[name] = value
        return response


def _tenants() -> list[str]:
    """The slugs of the tenants in the staff member's scope."""
    scope = current_scope()
    if isinstance(scope, Tenant):
        return [scope.pk]
    tenants = Tenant.objects.filter(is_active=True).order_by("slug")
    if scope is not ALL_TENANTS:
        tenants = tenants.filter(pk__in=sorted(scope if isinstance(scope, TenantSet) else []))
    return list(tenants.values_list("slug", flat=True)[:1000])


def _get(request: HttpRequest) -> JsonResponse:
    if request.GET.get("counts"):
        tenant = _tenant(request.GET.get("tenant"))
        page_filter = {key: request.GET[key] for key in ("include", "status", "since")
                       if request.GET.get(key)}
        origin = origin_of(request, path=ChangePath.BATCH, cause=ChangeCause.OPERATOR)
        with tenant_scope(tenant):
            return JsonResponse({
                action: batches.batch_create(tenant=tenant, action=action, filter=page_filter,
                                             dry_run=True, origin=origin)["matched"]
                for action in CONTROL_ACTIONS
            })
    batch_id = request.GET.get("id")
    if batch_id:
        return JsonResponse(batches.batch_as_dict(batches.batch_get(batch_id[:100])))
    recent = list(Batch.objects.defer("items").order_by("-created_at", "-id")[:RECENT])
    return JsonResponse({"tenants": _tenants(), "batches": batches.batches_to_dicts(recent)})


def _post(request: HttpRequest) -> JsonResponse:
    if not request.user.has_perm(CONTROL_PERMISSION):
        return JsonResponse(
            error_body("You may not control processes.", "permission_denied"), status=403
        )
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("Body must be JSON.", code="parse_error") from None
    if not isinstance(body, dict):
        raise InvalidInput("Body must be a JSON object.", code="parse_error")
    if "cancel" in body:
        if not isinstance(body["cancel"], str):
            raise InvalidInput("cancel must be a batch id.", field="cancel")
        return JsonResponse(batches.batch_as_dict(batches.batch_cancel(body["cancel"][:100])))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run must be true or false.", field="dry_run")
    tenant = _tenant(body.get("tenant"))
    # The batch reads and writes as that one tenant, whatever else the staff member sees.
    with tenant_scope(tenant):
        made = batches.batch_create(
            tenant=tenant, action=body.get("action"), filter=body.get("filter"),
            reason=body.get("reason", ""), dry_run=dry_run,
            origin=origin_of(request, path=ChangePath.BATCH, cause=ChangeCause.OPERATOR),
        )
    if dry_run:
        return JsonResponse(made)
    return JsonResponse(batches.batch_as_dict(made), status=202)


def _tenant(requested) -> Tenant:
    allowed = _tenants()
    if requested in (None, "") and len(allowed) == 1:
        requested = allowed[0]
    if not isinstance(requested, str) or requested not in allowed:
        raise InvalidInput("Name the tenant the batch is for (one of the tenants you manage).",
                           code="tenant_required", field="tenant")
    return Tenant.objects.get(pk=requested)
