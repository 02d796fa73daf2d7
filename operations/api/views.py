"""Operations API (DESIGN §5.1): process records, the hub, process detail and controls.

Views parse and authorise, call one service or selector, and serialise.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.api.pagination import LinkHeaderCursorPagination
from agent33.api.viewsets import ApiView, TenantScopedViewSet, tenant_of
from agent33.auth.scopes import WORKFLOWS_EXECUTE, WORKFLOWS_READ, WORKFLOWS_WRITE
from agent33.errors import InvalidInput
from agent33.tenancy.context import current_scope

from .. import batches, controls, selectors, services, stream
from ..choices import ChangeCause, ChangePath
from ..filtersets import (
    AutonomyBudgetFilterSet,
    ImprovementIntakeFilterSet,
    TraceFilterSet,
    WorkflowRunFilterSet,
)
from ..hub import HUB_INCLUDES
from ..models import AutonomyBudget, Batch, ImprovementIntake, Trace, TraceStep, WorkflowRun
from ..transitions import origin_of
from . import serializers as s

__all__ = [
    "AutonomyBudgetViewSet",
    "BatchCancelView",
    "BatchDetailView",
    "BatchListView",
    "HubStreamView",
    "HubView",
    "ImprovementIntakeViewSet",
    "ProcessControlView",
    "ProcessDetailView",
    "TraceViewSet",
    "WorkflowRunViewSet",
]


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: "Invalid input (the detail names the field).",
        401: "Missing or invalid token.",
        403: "Missing required scope.",
        404: "Not found (or another tenant's).",
        409: "The current state forbids it (the detail names the states).",
    }
    # The error body itself is added to every error response by agent33.api.schema.
    return {code: OpenApiResponse(description=meaning[code]) for code in codes}


class StartedAtPagination(LinkHeaderCursorPagination):
    ordering = ("-started_at", "-pk")


_RECORD_SCOPES = {
    "list": WORKFLOWS_READ,
    "retrieve": WORKFLOWS_READ,
    "create": WORKFLOWS_WRITE,
    "transition": WORKFLOWS_WRITE,
    "steps": WORKFLOWS_WRITE,
    "complete": WORKFLOWS_WRITE,
}


class _ProcessRecordViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    """list / retrieve / create for one record type; subclasses add the transition action."""

    required_scopes = _RECORD_SCOPES
    pagination_class = StartedAtPagination
    create_serializer_class: type[serializers.Serializer]
    create_service = None  # staticmethod(services.<entity>_create)

    def create(self, request, *args, **kwargs):
        tenant = tenant_of(request)
        data = self.create_serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        obj = self.create_service(tenant=tenant, **data.validated_data)
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    def _transition(self, request, transition_serializer, service, *, record_arg: str):
        obj = self.get_object()
        data = transition_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The cause follows the move (a control or approval is an operator's; the runtime
        # reporting progress is the process's): the status change decides.
        updated = service(**{record_arg: obj}, origin=origin_of(request, path=ChangePath.API),
                          **data.validated_data)
        return Response(self.get_serializer(updated).data)


def _record_schema(name: str, out, create, transition=None):
    views = {
        "list": extend_schema(summary=f"List {name}", responses={200: out(many=True),
                                                                **_errors(400, 401, 403)}),
        "retrieve": extend_schema(summary=f"Read one {name[:-1]}",
                                  responses={200: out, **_errors(401, 403, 404)}),
        "create": extend_schema(summary=f"Create a {name[:-1]}", request=create,
                                responses={201: out, **_errors(400, 401, 403)}),
    }
    if transition is not None:
        views["transition"] = extend_schema(
            summary=f"Move a {name[:-1]} to another status",
            request=transition,
            responses={200: out, **_errors(400, 401, 403, 404, 409)},
        )
    return extend_schema_view(**views)


@_record_schema("traces", s.TraceSerializer, s.TraceCreateSerializer)
class TraceViewSet(_ProcessRecordViewSet):
    model = Trace
    filterset_class = TraceFilterSet
    create_serializer_class = s.TraceCreateSerializer
    create_service = staticmethod(services.trace_create)

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            # A correlated count on the (tenant, trace, step_id) index: one query per page.
            counts = (
                TraceStep.objects.filter(tenant_id=OuterRef("tenant_id"), trace_id=OuterRef("pk"))
                .order_by()
                .values("trace_id")
                .annotate(n=Count("*"))
                .values("n")
            )
            queryset = queryset.annotate(
                step_count=Coalesce(Subquery(counts, output_field=IntegerField()), 0)
            )
        elif self.action == "retrieve":
            queryset = queryset.prefetch_related("steps")
        return queryset

    def get_serializer_class(self):
        return s.TraceSerializer if self.action == "list" else s.TraceDetailSerializer

    @extend_schema(
        summary="Add a finished step (with its actions) to a running trace",
        request=s.TraceStepCreateSerializer,
        responses={201: s.TraceStepSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def steps(self, request, pk=None):
        trace = self.get_object()
        data = s.TraceStepCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step = services.trace_add_step(trace=trace, **data.validated_data)
        return Response(s.TraceStepSerializer(step).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Finish a running trace with a terminal status",
        request=s.TraceCompleteSerializer,
        responses={200: s.TraceDetailSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        trace = self.get_object()
        data = s.TraceCompleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.trace_complete(
            trace=trace, origin=origin_of(request, path=ChangePath.API), **data.validated_data
        )
        return Response(s.TraceDetailSerializer(updated).data)


@_record_schema(
    "budgets", s.AutonomyBudgetSerializer, s.AutonomyBudgetCreateSerializer,
    s.BudgetTransitionSerializer,
)
class AutonomyBudgetViewSet(_ProcessRecordViewSet):
    model = AutonomyBudget
    serializer_class = s.AutonomyBudgetSerializer
    filterset_class = AutonomyBudgetFilterSet
    create_serializer_class = s.AutonomyBudgetCreateSerializer
    create_service = staticmethod(services.budget_create)

    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        return self._transition(
            request, s.BudgetTransitionSerializer, services.budget_transition, record_arg="budget"
        )


@_record_schema(
    "improvements", s.ImprovementIntakeSerializer, s.ImprovementIntakeCreateSerializer,
    s.IntakeTransitionSerializer,
)
class ImprovementIntakeViewSet(_ProcessRecordViewSet):
    model = ImprovementIntake
    serializer_class = s.ImprovementIntakeSerializer
    filterset_class = ImprovementIntakeFilterSet
    create_serializer_class = s.ImprovementIntakeCreateSerializer
    create_service = staticmethod(services.intake_create)

    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        return self._transition(
            request, s.IntakeTransitionSerializer, services.intake_transition, record_arg="intake"
        )


@_record_schema(
    "workflow runs", s.WorkflowRunSerializer, s.WorkflowRunCreateSerializer,
    s.WorkflowRunTransitionSerializer,
)
class WorkflowRunViewSet(_ProcessRecordViewSet):
    model = WorkflowRun
    serializer_class = s.WorkflowRunSerializer
    filterset_class = WorkflowRunFilterSet
    create_serializer_class = s.WorkflowRunCreateSerializer
    create_service = staticmethod(services.workflow_run_create)

    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        return self._transition(
            request, s.WorkflowRunTransitionSerializer, services.workflow_run_transition,
            record_arg="run",
        )


# --- the hub ----------------------------------------------------------------------------


class HubView(APIView):
    required_scopes = {"get": WORKFLOWS_READ}

    @extend_schema(
        summary="Operations Hub: recent processes of every registered type",
        parameters=[
            OpenApiParameter(
                "include", str, description="Comma-separated types to list: "
                f"{', '.join(HUB_INCLUDES)} (default: all)."
            ),
            OpenApiParameter(
                "since", str, description="ISO 8601 date-time on started_at (default: 24 h ago)."
            ),
            OpenApiParameter(
                "status", str, description="Only this status (default: every not-finished one)."
            ),
            OpenApiParameter("limit", int, description="1..100 (default 100)."),
        ],
        responses={200: s.HubSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request):
        query = selectors.parse_hub_query(request.query_params)
        return Response(selectors.hub_snapshot(query))


class HubStreamView(APIView):
    """Server-sent events of every process change in the caller's scope (DESIGN §8.4)."""

    required_scopes = {"get": WORKFLOWS_READ}
    renderer_classes = [JSONRenderer, stream.EventStreamRenderer]

    @extend_schema(
        summary="Live hub: a server-sent event for every process created or changed",
        description=(
            "text/event-stream. Each change of a process in the caller's scope is an event "
            "`process` whose data is the process as the hub lists it, with an `id:`. "
            "Reconnect with `Last-Event-ID` (or `?last_event_id=`) to replay what was missed "
            f"(at most {stream.CATCH_UP_LIMIT} events of the last 10 minutes; otherwise an "
            "event `reset`: reload the hub). A comment every 15 s keeps it open. 503 "
            "`stream_capacity` when the server process serves its limit of streams."
        ),
        parameters=[
            OpenApiParameter(
                "include", str, description="Comma-separated types: "
                f"{', '.join(HUB_INCLUDES)} (default: all)."
            ),
            OpenApiParameter(
                "status", str, description="Only changes into or out of this status."
            ),
            OpenApiParameter("last_event_id", str, description="As the Last-Event-ID header."),
            OpenApiParameter(
                "duration", float, description="Seconds before the server ends the stream "
                "(0: the catch-up only; default and most: 3600)."
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description="The event stream."),
            **_errors(400, 401, 403),
            503: OpenApiResponse(description="This server process serves its limit of streams."),
        },
    )
    def get(self, request):
        query = selectors.parse_hub_query(request.query_params)
        return stream.stream_response(request._request, scope=current_scope(), query=query)


class ProcessDetailView(APIView):
    required_scopes = {"get": WORKFLOWS_READ}

    @extend_schema(
        summary="One process with its type-specific detail and control history",
        responses={200: s.ProcessDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request, process_id: str):
        return Response(selectors.process_detail(process_id))


class ProcessControlView(ApiView):
    required_scopes = {"post": WORKFLOWS_EXECUTE}

    @extend_schema(
        summary="Pause, resume or cancel a process",
        request=s.ControlRequestSerializer,
        responses={200: s.ProcessDetailSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, process_id: str):
        data = s.ControlRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        detail = controls.process_control(
            process_id=process_id,
            action=data.validated_data["action"],
            reason=data.validated_data["reason"],
            origin=origin_of(request, path=ChangePath.HUB, cause=ChangeCause.OPERATOR),
        )
        return Response(detail)


# --- batches ----------------------------------------------------------------------------


class BatchPagination(LinkHeaderCursorPagination):
    ordering = ("-created_at", "-pk")


class BatchListView(ApiView):
    required_scopes = {"get": WORKFLOWS_READ, "post": WORKFLOWS_EXECUTE}

    @extend_schema(
        summary="Batches, newest first",
        parameters=[OpenApiParameter("limit", int, description="1..100 (default 50)."),
                    OpenApiParameter("cursor", str, description="From the Link header.")],
        responses={200: s.BatchSerializer(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        paginator = BatchPagination()
        page = paginator.paginate_queryset(Batch.objects.defer("items"), request, view=self)
        return paginator.get_paginated_response(batches.batches_to_dicts(page))

    @extend_schema(
        summary="Pause, resume or cancel every process a hub filter matches",
        request=s.BatchCreateSerializer,
        responses={200: s.BatchMatchedSerializer, 202: s.BatchSerializer,
                   429: OpenApiResponse(description="More than 3 batches queued or running."),
                   **_errors(400, 401, 403)},
    )
    def post(self, request):
        body = request.data
        if not isinstance(body, dict):
            raise InvalidInput("Body must be a JSON object.")
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InvalidInput("dry_run must be true or false.", field="dry_run")
        tenant = tenant_of(request)
        made = batches.batch_create(
            tenant=tenant, action=body.get("action"), filter=body.get("filter"),
            reason=body.get("reason", ""), dry_run=dry_run,
            origin=origin_of(request, path=ChangePath.BATCH, cause=ChangeCause.OPERATOR),
        )
        if dry_run:
            return Response(made)
        return Response(batches.batch_as_dict(made), status=status.HTTP_202_ACCEPTED)


class BatchDetailView(APIView):
    required_scopes = {"get": WORKFLOWS_READ}

    @extend_schema(summary="One batch and its progress",
                   responses={200: s.BatchSerializer, **_errors(401, 403, 404)})
    def get(self, request, batch_id: str):
        return Response(batches.batch_as_dict(batches.batch_get(batch_id)))


class BatchCancelView(ApiView):
    required_scopes = {"post": WORKFLOWS_EXECUTE}

    @extend_schema(summary="Stop a queued or running batch", request=None,
                   responses={200: s.BatchSerializer, **_errors(401, 403, 404, 409)})
    def post(self, request, batch_id: str):
        return Response(batches.batch_as_dict(batches.batch_cancel(batch_id)))
