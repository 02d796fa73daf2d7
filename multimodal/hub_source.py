"""Multimodal requests in the Operations Hub: a process source and the stats panel.

Registered from MultimodalConfig.ready(), so operations never imports this app. Cancelling
through the hub calls the same service as `POST /v1/multimodal/requests/{id}/cancel`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from agent33.errors import NotFound, StateConflict
from operations.hub import ControlOutcome, ProcessDetail, ProcessRow, iso

from .choices import RequestState
from .models import MultimodalRequest

__all__ = ["MultimodalRequestSource", "render_stats_panel"]

ACTIVE = (RequestState.PENDING.value, RequestState.PROCESSING.value)
_ROW_FIELDS = ("id", "tenant_id", "state", "created_at", "modality", "provider",
               "requested_timeout_seconds")


class MultimodalRequestSource:
    type_name = "multimodal_request"
    include_key = "multimodal"
    id_prefix = "mmreq-"
    statuses = tuple(RequestState.values)
    active_statuses = ACTIVE
    actions = ("cancel",)

    def allowed_actions(self, status: str) -> tuple[str, ...]:
        return ("cancel",) if status in ACTIVE else ()

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
            MultimodalRequest.objects.filter(state__in=list(statuses), created_at__gte=since)
            .order_by("-created_at", "-id")
            .values(*_ROW_FIELDS)[:limit]
        )
        return [self._row(values) for values in rows]

    def _detail(self, request: MultimodalRequest) -> ProcessDetail:
        values = {name: getattr(request, name) for name in _ROW_FIELDS}
        result = request.results.values("id").first()  # one result per request
        return ProcessDetail(
            row=self._row(values),
            tenant_id=request.tenant_id,
            extra={
                "input_text": request.input_text[:500],
                "input_artifact_id": request.input_artifact_id or "",
                "error_message": request.error_message,
                "result_id": result["id"] if result else "",
                "attempts": request.attempts,
                "deadline_at": iso(request.deadline_at),
                "finished_at": iso(request.finished_at),
            },
        )

    def get(self, process_id: str) -> ProcessDetail | None:
        request = MultimodalRequest.objects.filter(pk=process_id).first()
        return None if request is None else self._detail(request)

    def control(self, process_id: str, *, action: str, reason: str, actor: str) -> ControlOutcome:
        from .services import request_cancel

        if action not in self.actions:
            raise StateConflict(
                f"A multimodal request does not support '{action}' (supported controls: "
                "cancel).",
                code="unsupported_action",
            )
        # Locked inside the hub's transaction, so the state before is exact and no worker
        # can finish the request between this read and the cancel.
        request = (
            MultimodalRequest.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk=process_id)
            .first()
        )
        if request is None:
            raise NotFound(f"Process {process_id} not found.")
        before = request.state
        if before not in ACTIVE:
            raise StateConflict(
                f"Cannot cancel multimodal request {process_id}: it is '{before}', and cancel "
                "needs 'pending' or 'processing'.",
                code="invalid_transition",
            )
        request = request_cancel(request=request, actor=actor, reason=reason)
        return ControlOutcome(
            tenant_id=request.tenant_id,
            state_before=before,
            state_after=request.state,
            detail=self._detail(request),
        )


def render_stats_panel(request) -> str:
    """The hub page's multimodal panel: the last hour by modality x provider, in the staff
    member's tenant scope (set by the staff middleware)."""
    from .selectors import request_stats

    since = timezone.now() - timedelta(hours=1)
    return render_to_string(
        "multimodal/hub_panel.html", {"stats": request_stats(since=since), "since": since}
    )
