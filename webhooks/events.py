"""Where alerts come from: the other apps' after-commit signals (DESIGN §8.5).

- `intake.opened`: outcomes.signals.decline_opened (a decline opened an intake);
- `benchmark.regressed`: the same signal, for a CTRF test or a `benchmarks.*` domain;
- `spend.threshold_crossed`: multimodal.signals.spend_settled (settled spend reached 50, 80
  or 100 % of the daily limit; once per UTC day each);
- `budget.pending_approval`: operations.signals.statuses_changed (a budget moved to
  pending_approval);
- `multimodal.request_failed`: the same signal (a request moved to failed, a timeout
  included; never a cancellation);
- `batch.completed`: operations.signals.batch_completed (a batch of controls ended).

Every receiver first asks whether the tenant has an enabled endpoint subscribed to the event
(one small indexed query; nothing else when none is), then writes the deliveries and queues
their drains in one transaction (services.alert_emit). The signals are sent after the change
committed, so an alert is never sent for a change that rolled back; a process that dies
between the commit and the alert loses that alert (the change itself stands).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from .choices import SPEND_THRESHOLDS, EventType
from .models import SpendThresholdCrossing, WebhookEndpoint
from .services import alert_emit

__all__ = ["connect", "links", "subscribed"]

logger = logging.getLogger("agent33.webhooks")

BUDGET_TYPE = "autonomy_budget"
REQUEST_TYPE = "multimodal_request"


def subscribed(tenant_id: str, event_type: str) -> bool:
    """Whether the tenant has an enabled endpoint hearing `event_type` (in its scope)."""
    return any(event_type in types for types in WebhookEndpoint.objects.filter(
        tenant_id=tenant_id, enabled=True).values_list("event_types", flat=True))


def _scoped(handler):
    """Run a signal handler in the tenant scope of the change it announces, set here
    explicitly (a signal may arrive in a request of that tenant, a job, or a command)."""

    def run(tenant_id: str, *args, **kwargs) -> None:
        with tenant_scope(Tenant(pk=tenant_id)):
            handler(tenant_id, *args, **kwargs)

    return run


def _absolute(path: str) -> str:
    base = str(getattr(settings, "AGENT33_PUBLIC_URL", "") or "").rstrip("/")
    return base + path


def links(api_path: str, admin_name: str | None = None, *args: Any,
          staff_path: str | None = None) -> dict[str, str]:
    found = {"api": _absolute(api_path)}
    if admin_name:
        try:
            staff_path = reverse(admin_name, args=args)
        except NoReverseMatch:
            staff_path = None
    if staff_path:
        found["staff"] = _absolute(staff_path)
    return found


def _emit(tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
    try:
        alert_emit(tenant_id=tenant_id, event_type=event_type, data=data)
    except Exception:  # an alert never breaks what already committed
        logger.exception("could not queue %s alert for tenant %s", event_type, tenant_id)


# --- declines: intake.opened, benchmark.regressed ----------------------------------------


def on_decline_opened(sender, decline, **kwargs) -> None:
    _decline_opened(decline.tenant_id, decline)


@_scoped
def _decline_opened(tenant_id: str, decline) -> None:
    is_benchmark = decline.event_type is not None or decline.domain.startswith("benchmarks.")
    wanted = [EventType.INTAKE_OPENED]
    if is_benchmark:
        wanted.append(EventType.BENCHMARK_REGRESSED)
    wanted = [t for t in wanted if subscribed(decline.tenant_id, t)]
    if not wanted:
        return
    data = {
        "intake_id": decline.intake_id,
        "title": decline.title,
        "metric": decline.metric_type,
        "domain": decline.domain,
        "test": decline.event_type,
        "change_pct": round(decline.change_pct, 2),
        "previous_avg": decline.previous_avg,
        "current_avg": decline.current_avg,
        "sample_size": decline.sample_size,
        "urgency": decline.urgency,
        "links": links(f"/v1/operations/improvements/{decline.intake_id}",
                       "admin:operations_improvementintake_change", decline.intake_id),
    }
    for event_type in wanted:
        _emit(decline.tenant_id, event_type, data)


# --- spend.threshold_crossed -------------------------------------------------------------


def crossed_thresholds(settled_nanos: int, limit_nanos: int | None) -> list[int]:
    if not limit_nanos or limit_nanos <= 0:
        return []
    return [t for t in SPEND_THRESHOLDS if settled_nanos * 100 >= limit_nanos * t]


def on_spend_settled(sender, tenant_id: str, day: date, **kwargs) -> None:
    _spend_settled(tenant_id, day)


@_scoped
def _spend_settled(tenant_id: str, day: date) -> None:
    if not subscribed(tenant_id, EventType.SPEND_THRESHOLD_CROSSED):
        return
    from multimodal.models import DailySpend, MultimodalPolicy
    from multimodal.pricing import format_usd, from_nanos
    from multimodal.services.spend import limit_nanos

    policy = MultimodalPolicy.objects.filter(tenant_id=tenant_id).first()
    limit = limit_nanos(policy) if policy is not None else None
    spend = DailySpend.objects.filter(tenant_id=tenant_id, day=day).first()
    if spend is None or limit is None:
        return
    for threshold in crossed_thresholds(spend.settled_nano_usd, limit):
        # Once per (tenant, UTC day, threshold): the unique row is the decision, so of two
        # settlements that cross it at once exactly one inserts and alerts.
        try:
            with transaction.atomic():
                SpendThresholdCrossing.objects.create(tenant_id=tenant_id, day=day,
                                                          threshold=threshold)
        except IntegrityError:
            continue
        _emit(tenant_id, EventType.SPEND_THRESHOLD_CROSSED, {
            "threshold_pct": threshold,
            "day": day.isoformat(),
            "spent_usd": format_usd(from_nanos(spend.settled_nano_usd)),
            "limit_usd": format_usd(from_nanos(limit)),
            "spent_pct": round(spend.settled_nano_usd * 100 / limit, 1),
            "title": f"Daily spend passed {threshold} % of the limit",
            "links": links(f"/v1/multimodal/tenants/{tenant_id}/policy",
                           "admin:multimodal_dailyspend_changelist"),
        })


# --- status changes: budget.pending_approval, multimodal.request_failed -------------------


def on_statuses_changed(sender, changes, **kwargs) -> None:
    budgets = [c for c in changes
               if c.process_type == BUDGET_TYPE and c.state_after == "pending_approval"]
    failed = [c for c in changes
              if c.process_type == REQUEST_TYPE and c.state_after == "failed"]
    if budgets:
        _budgets_pending(budgets)
    if failed:
        _requests_failed(failed)


def _by_tenant(changes) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for change in changes:
        grouped.setdefault(change.tenant_id, []).append(change)
    return grouped


def _budgets_pending(changes) -> None:
    for tenant_id, mine in _by_tenant(changes).items():
        _budgets_of_tenant(tenant_id, mine)


@_scoped
def _budgets_of_tenant(tenant_id: str, mine: list) -> None:
    from operations.models import AutonomyBudget

    if subscribed(tenant_id, EventType.BUDGET_PENDING_APPROVAL):
        budgets = AutonomyBudget.objects.in_bulk([c.process_id for c in mine])
        for change in mine:
            budget = budgets.get(change.process_id)
            if budget is None:
                continue
            _emit(tenant_id, EventType.BUDGET_PENDING_APPROVAL, {
                "budget_id": budget.pk,
                "title": f"Budget {budget.task_id or budget.pk} waits for approval",
                "task_id": budget.task_id,
                "agent_id": budget.agent_id,
                "limits": budget.limits,
                "reason": change.reason[:500],
                "actor": change.actor,
                "links": links(f"/v1/operations/budgets/{budget.pk}",
                               "admin:operations_autonomybudget_change", budget.pk),
            })


def _requests_failed(changes) -> None:
    for tenant_id, mine in _by_tenant(changes).items():
        _requests_of_tenant(tenant_id, mine)


@_scoped
def _requests_of_tenant(tenant_id: str, mine: list) -> None:
    from multimodal.models import MultimodalRequest

    if subscribed(tenant_id, EventType.MULTIMODAL_REQUEST_FAILED):
        requests = MultimodalRequest.objects.in_bulk([c.process_id for c in mine])
        for change in mine:
            request = requests.get(change.process_id)
            if request is None:
                continue
            _emit(tenant_id, EventType.MULTIMODAL_REQUEST_FAILED, {
                "request_id": request.pk,
                "title": f"{request.modality} request on {request.provider} failed",
                "modality": request.modality,
                "provider": request.provider,
                "error": request.error_message[:500],
                # The reaper and the deadline end a request with "timed out after N s".
                "timed_out": request.error_message.startswith("timed out"),
                "cause": change.cause,
                "links": links(f"/v1/multimodal/requests/{request.pk}",
                               "admin:multimodal_multimodalrequest_change", request.pk),
            })


# --- batch.completed ---------------------------------------------------------------------


def on_batch_completed(sender, batch, **kwargs) -> None:
    """Reads, from the `operations.models.Batch` row: pk, tenant_id, action, state, matched,
    done, failed, skipped, finished_at (absent attributes are sent as null)."""
    tenant_id = getattr(batch, "tenant_id", None)
    if tenant_id:
        _batch_completed(tenant_id, batch)


@_scoped
def _batch_completed(tenant_id: str, batch) -> None:
    if not subscribed(tenant_id, EventType.BATCH_COMPLETED):
        return
    finished = getattr(batch, "finished_at", None) or timezone.now()
    data = {
        "batch_id": batch.pk,
        "title": f"Batch {getattr(batch, 'action', '')} {getattr(batch, 'state', '')}".strip(),
        **{name: getattr(batch, name, None)
           for name in ("action", "state", "matched", "done", "failed", "skipped")},
        "finished_at": finished.isoformat() if hasattr(finished, "isoformat") else finished,
        "links": links(f"/v1/operations/batches/{batch.pk}",
                       staff_path="/admin/operations/hub/"),
    }
    _emit(tenant_id, EventType.BATCH_COMPLETED, data)


def connect() -> None:
    from multimodal.signals import spend_settled
    from operations.signals import batch_completed, statuses_changed
    from outcomes.signals import decline_opened

    decline_opened.connect(on_decline_opened, dispatch_uid="webhooks.decline_opened")
    spend_settled.connect(on_spend_settled, dispatch_uid="webhooks.spend_settled")
    statuses_changed.connect(on_statuses_changed, dispatch_uid="webhooks.statuses_changed")
    batch_completed.connect(on_batch_completed, dispatch_uid="webhooks.batch_completed")
