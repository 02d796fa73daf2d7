"""Outcomes API (DESIGN §5.3). Thin: parse, authorise, call a service or selector, render."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.api.datetimes import parse_utc_query_datetime
from agent33.api.viewsets import ApiView, TenantScopedViewSet, tenant_of
from agent33.auth.scopes import OUTCOMES_READ, OUTCOMES_WRITE
from agent33.tenancy.models import Tenant

from .. import selectors
from ..choices import METRIC_TYPES
from ..ctrf import MAX_RECORDED_TESTS, ctrf_ingest
from ..filtersets import OutcomeEventFilter
from ..limits import events_allowance_check
from ..models import MAX_LABEL_LENGTH, OutcomeEvent
from ..series import BUCKETS, DEFAULT_BUCKETS, MAX_BUCKETS, SeriesError, zone
from ..services import event_record, event_record_bulk
from ..validation import EventInvalid, clean_event
from .pagination import OccurredAtKeysetPagination
from .parsers import OutcomesJSONParser
from .serializers import (
    BulkCreatedSerializer,
    CtrfIngestedSerializer,
    CtrfReportSerializer,
    DashboardSerializer,
    OutcomeEventBulkSerializer,
    OutcomeEventCreateSerializer,
    OutcomeEventSerializer,
    SeriesSerializer,
    TrendSerializer,
)

__all__ = [
    "CtrfIngestView",
    "DashboardView",
    "OutcomeEventViewSet",
    "SeriesView",
    "TrendView",
    "series_from_query",
]

ERRORS = {
    400: OpenApiResponse(description="Invalid input: `{detail, code, errors}`."),
    401: OpenApiResponse(description="Missing or invalid token."),
    403: OpenApiResponse(description="Missing required scope."),
}
NOT_FOUND = {404: OpenApiResponse(description="Not found (or another tenant's).")}


def _json_object(data, *, what: str = "The request body") -> dict:
    if not isinstance(data, dict):
        raise DRFValidationError({"non_field_errors": [f"{what} must be a JSON object."]})
    return data


def _read_tenant(request) -> Tenant:
    """The tenant whose trends to read: the token's; operator tokens name one with
    `tenant_id` (a tenant token naming another tenant gets 404, as for any foreign object)."""
    requested = request.query_params.get("tenant_id", "").strip()
    own = request.user.tenant
    if own is not None:
        if requested and requested != own.pk:
            raise NotFound()
        return own
    if not requested:
        raise DRFValidationError(
            {"tenant_id": ["Operator tokens must name the tenant (tenant_id=...)."]}
        )
    tenant = Tenant.objects.filter(pk=requested).first()
    if tenant is None:
        raise NotFound()
    return tenant


def _int_param(request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DRFValidationError(
            {name: [f"Must be an integer between 1 and {maximum}."]}
        ) from None
    if not 1 <= value <= maximum:
        raise DRFValidationError({name: [f"Must be between 1 and {maximum}."]})
    return value


def _label_param(request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > MAX_LABEL_LENGTH:
        raise DRFValidationError({name: [f"At most {MAX_LABEL_LENGTH} characters."]})
    if value is not None and "\x00" in value:
        # PostgreSQL refuses NUL in a text parameter (a 500); no label can contain one.
        raise DRFValidationError({name: ["Null characters are not allowed."]})
    return value


def _domain_param(request) -> str | None:
    return _label_param(request, "domain")


def _event_type_param(request) -> str | None:
    return (_label_param(request, "event_type") or "").strip() or None


TENANT_PARAM = OpenApiParameter(
    "tenant_id", str, description="Operator tokens only: the tenant to read."
)
DOMAIN_PARAM = OpenApiParameter(
    "domain", str, description='A domain, or empty / "all" for every domain.'
)
EVENT_TYPE_PARAM = OpenApiParameter(
    "event_type", str, description="One event type (a CTRF test: `suite > name`); needs "
    "`domain`.",
)
WINDOW_PARAM = OpenApiParameter(
    "window", int, description=f"Latest N events per trend, 1..{selectors.MAX_WINDOW} "
    f"(default {selectors.DEFAULT_WINDOW})."
)


class OutcomeEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    model = OutcomeEvent
    serializer_class = OutcomeEventSerializer
    filterset_class = OutcomeEventFilter
    pagination_class = OccurredAtKeysetPagination
    parser_classes = [OutcomesJSONParser]
    required_scopes = {
        "list": OUTCOMES_READ,
        "retrieve": OUTCOMES_READ,
        "create": OUTCOMES_WRITE,
        "bulk": OUTCOMES_WRITE,
    }

    @extend_schema(
        summary="List events, newest occurred_at first",
        responses={200: OutcomeEventSerializer(many=True), **ERRORS},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one event", responses={200: OutcomeEventSerializer, **ERRORS, **NOT_FOUND}
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Record an event",
        request=OutcomeEventCreateSerializer,
        responses={201: OutcomeEventSerializer, **ERRORS},
    )
    def create(self, request):
        tenant = tenant_of(request)
        events_allowance_check(tenant=tenant)
        try:
            clean = clean_event(_json_object(request.data))
        except EventInvalid as exc:
            raise ValidationError(exc.errors) from None
        event = event_record(tenant=tenant, metered=True, **clean.as_kwargs())
        return Response(OutcomeEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Record up to 10,000 events, all or nothing",
        description="A bad event → 400 whose `errors` keys and `detail` name its index "
        "(`events.3.value`); nothing is stored.",
        request=OutcomeEventBulkSerializer,
        responses={201: BulkCreatedSerializer, **ERRORS, 413: OpenApiResponse(
            description="Request body too large.")},
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request):
        tenant = tenant_of(request)
        events_allowance_check(tenant=tenant)  # before the body is parsed
        body = _json_object(request.data)
        if "events" not in body:
            raise DRFValidationError({"events": ["This field is required."]})
        created = event_record_bulk(tenant=tenant, events=body["events"], metered=True)
        return Response({"created": created}, status=status.HTTP_201_CREATED)


class TrendView(APIView):
    required_scopes = {"get": OUTCOMES_READ}

    @extend_schema(
        summary="A metric's trend over its latest `window` events",
        parameters=[
            OpenApiParameter(
                "metric_type", str, OpenApiParameter.PATH, enum=list(METRIC_TYPES)
            ),
            DOMAIN_PARAM,
            OpenApiParameter(
                "event_type", str, description="One event type's trend (a CTRF test: `suite "
                "> name`), needs `domain`: its latest `window` minutes with events, each "
                "minute's average (a CTRF report is one run at one time)."),
            WINDOW_PARAM,
            TENANT_PARAM,
        ],
        responses={200: TrendSerializer, **ERRORS, 404: OpenApiResponse(
            description="Unknown metric type.")},
    )
    def get(self, request, metric_type: str):
        if metric_type not in METRIC_TYPES:
            raise NotFound(
                f"Unknown metric type {metric_type[:50]!r}; expected one of "
                f"{', '.join(METRIC_TYPES)}."
            )
        domain = _domain_param(request)
        event_type = _event_type_param(request)
        if event_type and not selectors.normalise_domain(domain):
            raise DRFValidationError({"event_type": [
                "Name the domain too: an event type's trend is kept per domain."]})
        window = _int_param(
            request, "window", default=selectors.DEFAULT_WINDOW, maximum=selectors.MAX_WINDOW
        )
        trend = selectors.trend_get(
            tenant=_read_tenant(request), metric_type=metric_type, domain=domain, window=window,
            event_type=event_type,
        )
        return Response(TrendSerializer(trend).data)


class SeriesView(APIView):
    required_scopes = {"get": OUTCOMES_READ}

    @extend_schema(
        summary="A metric per minute, hour, day or week, from rollups",
        description="One entry per bucket overlapping [`from`, `to`), empty ones included "
        "(count 0, stats null). count, avg, min and max are exact; p50 and p95 within 1 % "
        "relative error (DDSketch bins). Days and weeks start at local midnight in `tz` "
        f"(weeks on Monday). At most {MAX_BUCKETS:,} buckets (400 naming `bucket`). Read "
        "from rollups kept at ingest, never from raw events: old periods answer after "
        "retention removed their events.",
        parameters=[
            OpenApiParameter("metric_type", str, required=True, enum=list(METRIC_TYPES)),
            DOMAIN_PARAM,
            EVENT_TYPE_PARAM,
            OpenApiParameter("bucket", str, enum=list(BUCKETS),
                             description="Default day."),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="ISO 8601 (without an "
                             "offset: UTC). Default: "
                             + ", ".join(f"{n} {b}s" for b, n in DEFAULT_BUCKETS.items())
                             + " before `to`."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="ISO 8601, exclusive. "
                             "Default: now."),
            OpenApiParameter("tz", str, description="IANA time zone name (default UTC)."),
            OpenApiParameter("compare", str, enum=["previous"], description="`previous` adds "
                             "the same number of buckets right before, as `previous`."),
            TENANT_PARAM,
        ],
        responses={200: SeriesSerializer, **ERRORS},
    )
    def get(self, request):
        try:
            series = series_from_query(
                _read_tenant(request), request.query_params, domain=_domain_param(request),
                event_type=_event_type_param(request),
            )
        except SeriesError as exc:
            raise DRFValidationError({exc.field: [exc.message]}) from None
        return Response(SeriesSerializer(series).data)


def series_from_query(tenant: Tenant, params, *, domain: str | None, event_type: str | None):
    """The series a query string asks for (the API's and the staff dashboard's); bad
    parameters raise SeriesError naming the parameter."""
    metric_type = params.get("metric_type", "")
    if metric_type not in METRIC_TYPES:
        raise SeriesError("metric_type", "This field is required." if not metric_type else (
            f"Unknown metric type {metric_type[:50]!r}; expected one of "
            f"{', '.join(METRIC_TYPES)}."))
    compare = params.get("compare", "")
    if compare not in ("", "previous"):
        raise SeriesError("compare", 'Must be "previous" (or absent).')
    moments = {}
    for name in ("from", "to"):
        if params.get(name):
            try:
                moments[name] = parse_utc_query_datetime(params[name])
            except ValueError as exc:
                raise SeriesError(name, str(exc)) from None
    return selectors.series_get(
        tenant=tenant,
        metric_type=metric_type,
        domain=domain,
        event_type=event_type,
        bucket=params.get("bucket") or "day",
        tz=zone(params.get("tz") or "UTC"),
        start=moments.get("from"),
        end=moments.get("to") or timezone.now(),
        compare_previous=compare == "previous",
    )


class DashboardView(APIView):
    required_scopes = {"get": OUTCOMES_READ}

    @extend_schema(
        summary="Four trends, recent events, a summary and the per-domain table",
        parameters=[
            DOMAIN_PARAM,
            WINDOW_PARAM,
            OpenApiParameter(
                "recent_limit",
                OpenApiTypes.INT,
                description=f"Recent events, 1..{selectors.MAX_RECENT_LIMIT} "
                f"(default {selectors.DEFAULT_RECENT_LIMIT}).",
            ),
            OpenApiParameter(
                "domains_limit",
                OpenApiTypes.INT,
                description=f"Rows of `domains`, 1..{selectors.MAX_DOMAINS_LIMIT} "
                f"(default {selectors.DEFAULT_DOMAINS_LIMIT}); declining domains come first, "
                "so they are the last to be cut.",
            ),
            TENANT_PARAM,
        ],
        responses={200: DashboardSerializer, **ERRORS},
    )
    def get(self, request):
        domain = _domain_param(request)
        window = _int_param(
            request, "window", default=selectors.DEFAULT_WINDOW, maximum=selectors.MAX_WINDOW
        )
        recent_limit = _int_param(
            request,
            "recent_limit",
            default=selectors.DEFAULT_RECENT_LIMIT,
            maximum=selectors.MAX_RECENT_LIMIT,
        )
        domains_limit = _int_param(
            request,
            "domains_limit",
            default=selectors.DEFAULT_DOMAINS_LIMIT,
            maximum=selectors.MAX_DOMAINS_LIMIT,
        )
        dashboard = selectors.dashboard_get(
            tenant=_read_tenant(request),
            domain=domain,
            window=window,
            recent_limit=recent_limit,
            domains_limit=domains_limit,
        )
        return Response(DashboardSerializer(dashboard).data)


class CtrfIngestView(ApiView):
    required_scopes = {"post": OUTCOMES_WRITE}
    parser_classes = [OutcomesJSONParser]  # NaN in a report is refused naming its path

    @extend_schema(
        summary="Record a CTRF test report as outcome events",
        description="Per passed or failed test: a `success_rate` event (1 passed, 0 failed) "
        "and a `latency_ms` event (its duration), event_type = the test's name, occurred_at "
        "= `results.summary.start`; metadata keeps the test's `extra` and the report's "
        "`environment.commit` / `branchName`. Skipped, pending and other tests record "
        f"nothing. At most {MAX_RECORDED_TESTS} passed or failed tests (one bulk insert, all "
        "or nothing); decline detection applies as to any event. An invalid report is a 400 "
        "whose `errors` key names the JSON path of the problem (`results.tests[3].status`).",
        parameters=[
            OpenApiParameter(
                "domain", {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_LENGTH},
                description="The events' domain (default: `benchmarks.<results.tool.name>`).",
            ),
        ],
        request=CtrfReportSerializer,
        responses={
            201: CtrfIngestedSerializer,
            **ERRORS,
            400: OpenApiResponse(description="Not a valid CTRF report (or a bad `domain`): "
                                 "the `errors` key names the JSON path of the problem."),
            413: OpenApiResponse(description="Request body too large."),
        },
    )
    def post(self, request):
        tenant = tenant_of(request)
        events_allowance_check(tenant=tenant)  # before the body is parsed
        ingested = ctrf_ingest(
            tenant=tenant,
            report=request.data,
            domain=request.query_params.get("domain"),
            metered=True,
        )
        return Response(
            {"created": ingested.created, "domain": ingested.domain},
            status=status.HTTP_201_CREATED,
        )
