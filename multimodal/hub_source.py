"""Multimodal requests in the Operations Hub: a process source and the stats panel.

Registered from MultimodalConfig.ready(), so operations never imports this app. The source's
statuses, controls and `allowed_actions` come from `REQUEST_MACHINE`, and its cancel runs
the same service as `POST /v1/multimodal/requests/{id}/cancel`, so both paths give the same
answer in every state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from agent33.errors import NotFound
from operations.hub import AttentionItem, ProcessDetail, ProcessRow, iso
from operations.transitions import Origin

from .choices import REQUEST_MACHINE, RequestState
from .models import MultimodalRequest
from .services import request_cancel

__all__ = ["MultimodalRequestSource", "recently_failed_item", "render_stats_panel"]

_ROW_FIELDS = ("id", "tenant_id", "state", "created_at", "modality", "provider",
               "requested_timeout_seconds")


class MultimodalRequestSource:
    type_name = "multimodal_request"
    include_key = "multimodal"
    id_prefix = "mmreq-"
    statuses = REQUEST_MACHINE.states
    active_statuses = REQUEST_MACHINE.active
    actions = tuple(REQUEST_MACHINE.controls)  # cancel: the service below is its only one

    def allowed_actions(self, status: str) -> tuple[str, ...]:
        return REQUEST_MACHINE.allowed_actions(status)

    def _row(self, values: dict[str, Any]) -> ProcessRow:
        return ProcessRow(
            id=values["id"],
            type=self.type_name,
            status=values["state"],
            # A request "starts" for the hub when it is created: pending ones are waiting.
            started_at=values["created_at"],
            name=f"{values['modality']} ({values['provider']})",
            metadata={
                "tenant_id": values["tenant_id"],
                "modality": values["modality"],
                "provider": values["provider"],
                "requested_timeout_seconds": values["requested_timeout_seconds"],
            },
            allowed_actions=self.allowed_actions(values["state"]),
        )

    def list(
        self, *, scope: Any, since: datetime, statuses: tuple[str, ...], limit: int
    ) -> list[ProcessRow]:
        rows = (
            self.matching(since=since, statuses=statuses)
            .order_by("-created_at", "-id")
            .values(*_ROW_FIELDS)[:limit]
        )
        return [self._row(values) for values in rows]

    def rows(self, ids: list[str]) -> dict[str, ProcessRow]:
        """These requests' hub rows, any tenant, in one query (the live hub's broker)."""
        values = MultimodalRequest.all_tenants.filter(pk__in=ids).values(*_ROW_FIELDS)
        return {row["id"]: self._row(row) for row in values}

    def matching(self, *, since: datetime, statuses: tuple[str, ...]):
        """Every request the hub's filter selects (no limit): the hub lists from it, batches
        count and snapshot it."""
        return MultimodalRequest.objects.filter(state__in=list(statuses), created_at__gte=since)

    def _detail(self, mm_request: MultimodalRequest) -> ProcessDetail:
        values = {name: getattr(mm_request, name) for name in _ROW_FIELDS}
        if hasattr(mm_request, "result_ref"):  # annotated by the service's reload
            result_id = mm_request.result_ref or ""
        else:
            result = mm_request.results.values("id").first()  # one result per request
            result_id = result["id"] if result else ""
        return ProcessDetail(
            row=self._row(values),
            tenant_id=mm_request.tenant_id,
            extra={
                "input_text": mm_request.input_text[:500],
                "input_artifact_id": mm_request.input_artifact_id or "",
                "error_message": mm_request.error_message,
                "result_id": result_id,
                "attempts": mm_request.attempts,
                "deadline_at": iso(mm_request.deadline_at),
                "finished_at": iso(mm_request.finished_at),
            },
        )

    def get(self, process_id: str) -> ProcessDetail | None:
        mm_request = MultimodalRequest.objects.filter(pk=process_id).first()
        return None if mm_request is None else self._detail(mm_request)

    def control(self, process_id: str, *, action: str, reason: str,
                origin: Origin) -> ProcessDetail:
        mm_request = MultimodalRequest.objects.filter(pk=process_id).first()
        if mm_request is None:
            raise NotFound(f"Process {process_id} not found.")
        if action not in REQUEST_MACHINE.controls:
            raise REQUEST_MACHINE.unsupported(action)
        # The service decides, as it does for the API's cancel: pending and processing
        # requests are cancelled, a cancelled one stays as it is, others are a 409.
        return self._detail(request_cancel(mm_request=mm_request, origin=origin, reason=reason))


def render_stats_panel(request) -> str:
    """The hub page's multimodal panel: the last hour by modality x provider (with spend),
    and today's spend against each tenant's daily limit, in the staff member's tenant scope
    (set by the staff middleware)."""
    from .selectors import request_stats, spend_today_in_scope

    since = timezone.now() - timedelta(hours=1)
    return render_to_string("multimodal/hub_panel.html", {
        "stats": request_stats(since=since), "since": since,
        "spend_today": spend_today_in_scope(),
    })


def recently_failed_item() -> AttentionItem:
    """The hub's "Needs attention" count of requests that failed in the last hour, linked to
    the admin list of exactly those."""

    def cutoff():
        return timezone.now() - timedelta(hours=1)

    def count() -> int:
        return MultimodalRequest.objects.filter(
            state=RequestState.FAILED, finished_at__gte=cutoff()
        ).count()

    def list_url() -> str:
        query = {"state__exact": RequestState.FAILED.value,
                 "finished_at__gte": cutoff().isoformat(timespec="seconds")}
        return reverse("admin:multimodal_multimodalrequest_changelist") + "?" + urlencode(query)

    return AttentionItem(key="multimodalrequest-failed", label="Requests failed in the last hour",
                         count=count, list_url=list_url)
