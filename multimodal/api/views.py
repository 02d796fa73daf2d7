"""Multimodal API (DESIGN §5.2): thin views over services and selectors."""

from __future__ import annotations

from datetime import timedelta

from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.api.datetimes import parse_utc_datetime_param
from agent33.api.pagination import LinkHeaderCursorPagination
from agent33.api.viewsets import ApiView, TenantScopedViewSet, actor_of, tenant_of
from agent33.auth.permissions import HasRequiredScopes, OperatorOnly
from agent33.auth.scopes import MULTIMODAL_ADMIN, MULTIMODAL_READ, MULTIMODAL_WRITE
from agent33.errors import NotFound
from agent33.tenancy.models import Tenant
from operations.choices import ChangeCause, ChangePath
from operations.transitions import origin_of

from .. import provider_keys, selectors, services
from ..filtersets import PriceFilterSet, RequestFilterSet
from ..models import Artifact, CloudProvider, MultimodalRequest, ProviderPrice
from ..sniffing import EXTENSIONS
from .serializers import (
    ArtifactSerializer,
    ArtifactUploadSerializer,
    CancelSerializer,
    PolicySerializer,
    PolicyUpdateSerializer,
    PriceSerializer,
    PriceUpdateSerializer,
    ProviderKeySerializer,
    ProviderKeyUpdateSerializer,
    RequestCreateSerializer,
    RequestSerializer,
    ResultSerializer,
    SpendSerializer,
    StatsSerializer,
)

__all__ = [
    "ArtifactViewSet",
    "PolicyView",
    "PriceListView",
    "PriceView",
    "ProviderKeyListView",
    "ProviderKeyView",
    "RequestViewSet",
    "SpendView",
    "StatsView",
]

ERRORS = {
    400: OpenApiResponse(description="Bad input: `{detail, code, errors?}`"),
    401: OpenApiResponse(description="Missing or invalid token"),
    403: OpenApiResponse(description="Missing scope"),
}
OBJECT_ERRORS = {**ERRORS, 404: OpenApiResponse(description="No such object for this tenant")}
CONFLICT = {409: OpenApiResponse(description="The request's state forbids this")}


class ArtifactViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    model = Artifact
    serializer_class = ArtifactSerializer
    parser_classes = [MultiPartParser, FormParser]
    required_scopes = {
        "create": MULTIMODAL_WRITE,
        "retrieve": MULTIMODAL_READ,
        "content": MULTIMODAL_READ,
    }

    def perform_content_negotiation(self, request, force=False):
        # The content route answers with the file's own type whatever the client accepts
        # (Accept: audio/wav must not be a 406); errors still render as JSON.
        if getattr(self, "action", None) == "content":
            renderer = self.get_renderers()[0]
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        request={"multipart/form-data": ArtifactUploadSerializer},
        responses={201: ArtifactSerializer, **ERRORS,
                   413: OpenApiResponse(description="Body over the global limit")},
        summary="Upload an artifact (multipart field `file`)",
    )
    def create(self, request):
        upload = ArtifactUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        artifact = services.artifact_create(
            tenant=tenant_of(request),
            actor=actor_of(request),
            content=upload.validated_data["file"],
        )
        return Response(ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ArtifactSerializer, **OBJECT_ERRORS})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        responses={
            **{(200, content_type): OpenApiTypes.BINARY for content_type in EXTENSIONS},
            **OBJECT_ERRORS,
        },
        summary="The artifact's bytes, with its sniffed content type",
    )
    @action(detail=True, methods=["get"])
    def content(self, request, pk=None):
        artifact = self.get_object()
        try:
            handle = artifact.file.open("rb")
        except OSError:
            raise NotFound(f"The content of artifact {artifact.pk} is missing from storage.",
                           code="artifact_content_missing") from None
        return FileResponse(
            handle,
            content_type=artifact.content_type,
            as_attachment=True,
            filename=f"{artifact.pk}.{artifact.extension}",
        )


class RequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    model = MultimodalRequest
    serializer_class = RequestSerializer
    filterset_class = RequestFilterSet
    required_scopes = {
        "list": MULTIMODAL_READ,
        "retrieve": MULTIMODAL_READ,
        "result": MULTIMODAL_READ,
        "create": MULTIMODAL_WRITE,
        "execute": MULTIMODAL_WRITE,
        "cancel": MULTIMODAL_WRITE,
    }

    def get_queryset(self):
        return selectors.requests_with_result_id()

    @extend_schema(responses={200: RequestSerializer(many=True), **ERRORS})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: RequestSerializer, **OBJECT_ERRORS})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=RequestCreateSerializer,
        responses={201: RequestSerializer, **ERRORS, 429: OpenApiResponse(
            description="`spend_limit_reached`: the request's estimated cost would pass the "
            "tenant's daily spend limit; nothing was stored. `Retry-After`: seconds to the "
            "next 00:00 UTC.")},
    )
    def create(self, request):
        payload = RequestCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        created = services.request_create(
            tenant=tenant_of(request), actor=actor_of(request), **payload.validated_data
        )
        return Response(RequestSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={
        200: RequestSerializer, **OBJECT_ERRORS, **CONFLICT,
        429: OpenApiResponse(description="`spend_limit_reached`: the estimated cost would "
                             "pass the daily spend limit; the request is left as it was."),
    })
    @action(detail=True, methods=["post"])
    def execute(self, request, pk=None):
        updated = services.request_execute(
            mm_request=self.get_object(),
            origin=origin_of(request, path=ChangePath.API, cause=ChangeCause.OPERATOR),
        )
        return Response(RequestSerializer(updated).data)

    @extend_schema(request=CancelSerializer,
                   responses={200: RequestSerializer, **OBJECT_ERRORS, **CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        payload = CancelSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        updated = services.request_cancel(
            mm_request=self.get_object(),
            origin=origin_of(request, path=ChangePath.API, cause=ChangeCause.OPERATOR),
            reason=payload.validated_data["reason"],
        )
        return Response(RequestSerializer(updated).data)

    @extend_schema(responses={200: ResultSerializer, **OBJECT_ERRORS})
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        obj = self.get_object()
        found = selectors.request_result(obj)
        if found is None:
            raise NotFound(f"Request {obj.pk} has no result yet (state {obj.state}).",
                           code="not_found")
        return Response(ResultSerializer(found).data)


def _policy_tenant(request, tenant_id: str) -> Tenant:
    """A tenant token reaches only its own tenant; operators any. Others look absent."""
    own = getattr(request.user, "tenant", None)
    if own is not None:
        if own.pk != tenant_id:
            raise NotFound(f"Tenant {tenant_id} does not exist.")
        return own
    # PostgreSQL refuses NUL in text (a 500); such an id names no tenant anyway.
    tenant = Tenant.objects.filter(pk=tenant_id).first() if "\x00" not in tenant_id else None
    if tenant is None:
        raise NotFound(f"Tenant {tenant_id} does not exist.")
    return tenant


class PolicyView(ApiView):
    required_scopes = {"get": MULTIMODAL_READ, "post": MULTIMODAL_ADMIN}

    @extend_schema(responses={200: PolicySerializer, **OBJECT_ERRORS},
                   summary="The tenant's multimodal policy (defaults until set)")
    def get(self, request, tenant_id: str):
        tenant = _policy_tenant(request, tenant_id)
        return Response(PolicySerializer(services.policy_for(tenant)).data)

    @extend_schema(request=PolicyUpdateSerializer,
                   responses={200: PolicySerializer, **OBJECT_ERRORS},
                   summary="Set some or all of the tenant's policy (multimodal:admin)")
    def post(self, request, tenant_id: str):
        tenant = _policy_tenant(request, tenant_id)
        payload = PolicyUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        policy = services.policy_set(
            tenant=tenant, actor=actor_of(request), values=payload.validated_data
        )
        return Response(PolicySerializer(policy).data)


class StatsView(APIView):
    required_scopes = MULTIMODAL_READ

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.DATETIME, description="ISO 8601; default one hour ago"
            )
        ],
        responses={200: StatsSerializer(many=True), **ERRORS},
        summary="Per modality x provider: counts, success rate, p50/p95 latency, last errors",
    )
    def get(self, request):
        raw = request.query_params.get("since")
        if raw:
            since = parse_utc_datetime_param(raw, field="since")
        else:
            since = timezone.now() - timedelta(hours=1)
        stats = selectors.request_stats(since=since)
        return Response(StatsSerializer(stats, many=True).data)


class SpendView(APIView):
    required_scopes = MULTIMODAL_READ

    @extend_schema(responses={200: SpendSerializer, **OBJECT_ERRORS},
                   summary="The tenant's multimodal spend today (UTC) against its daily limit")
    def get(self, request, tenant_id: str):
        tenant = _policy_tenant(request, tenant_id)
        return Response(SpendSerializer(selectors.spend_today(tenant)).data)


class PricePagination(LinkHeaderCursorPagination):
    ordering = ("-updated_at", "-id")  # the latest change first


class PriceListView(ListAPIView):
    """The platform's price table: the same for every tenant."""

    required_scopes = MULTIMODAL_READ
    serializer_class = PriceSerializer
    pagination_class = PricePagination
    filterset_class = PriceFilterSet

    def get_queryset(self):
        return ProviderPrice.objects.all()

    @extend_schema(responses={200: PriceSerializer(many=True), **ERRORS},
                   summary="The price table: USD per unit of usage per provider and model")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PriceView(APIView):
    """Operators only: an all-tenants token with multimodal:admin. A tenant's token is 403
    whatever its scopes: prices are the platform's, the same for every tenant."""

    required_scopes = MULTIMODAL_ADMIN
    permission_classes = [HasRequiredScopes, OperatorOnly]

    @extend_schema(
        request=PriceUpdateSerializer,
        responses={200: PriceSerializer, **ERRORS,
                   403: OpenApiResponse(description="Missing multimodal:admin, or a tenant's "
                                        "token (`operator_token_required`)"),
                   404: OpenApiResponse(description="Unknown provider")},
        summary="Set the price of a provider's model (operator token with multimodal:admin)",
    )
    def put(self, request, provider: str, model: str):
        payload = PriceUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        price = services.price_set(provider=provider, model=model, actor=actor_of(request),
                                   usd_per_unit=payload.validated_data["usd_per_unit"])
        return Response(PriceSerializer(price).data)


class BaseUrlForbidden(PermissionDenied):
    default_code = "base_url_operator_only"


KEY_ERRORS = {
    **OBJECT_ERRORS,
    403: OpenApiResponse(description="Missing multimodal:admin, or base_url from a tenant token"),
    404: OpenApiResponse(description="No such tenant (or another tenant's), or unknown provider"),
    503: OpenApiResponse(description="AGENT33_SECRET_KEYS is not configured on the server"),
}


class ProviderKeyListView(APIView):
    """A tenant's stored provider keys (metadata only). multimodal:admin even to read:
    which providers a tenant pays for, and where they point, is admin business."""

    required_scopes = MULTIMODAL_ADMIN

    @extend_schema(responses={200: ProviderKeySerializer(many=True), **OBJECT_ERRORS},
                   summary="The tenant's stored provider keys (never the keys themselves)")
    def get(self, request, tenant_id: str):
        tenant = _policy_tenant(request, tenant_id)
        return Response(
            ProviderKeySerializer(provider_keys.credentials_list(tenant), many=True).data
        )


PROVIDER_PARAMETER = OpenApiParameter(
    "provider", OpenApiTypes.STR, OpenApiParameter.PATH, enum=sorted(CloudProvider.values),
    description="Unknown providers are 404 `unknown_provider`.",
)


class ProviderKeyView(APIView):
    required_scopes = MULTIMODAL_ADMIN

    @extend_schema(
        parameters=[PROVIDER_PARAMETER],
        request=ProviderKeyUpdateSerializer,
        responses={200: ProviderKeySerializer, **KEY_ERRORS},
        summary="Store or replace the tenant's key for a provider (multimodal:admin)",
    )
    def put(self, request, tenant_id: str, provider: str):
        tenant = _policy_tenant(request, tenant_id)
        provider_keys.known_provider(provider)
        if isinstance(request.data, dict) and "base_url" in request.data \
                and not request.user.is_operator:
            # A tenant must not aim the server's requests at internal addresses.
            raise BaseUrlForbidden(
                "base_url can be set only by an operator token or staff in the admin; "
                "leave it out (the current one is kept)."
            )
        payload = ProviderKeyUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        credential = provider_keys.credential_set(
            tenant=tenant, actor=actor_of(request), provider=provider,
            **payload.validated_data,
        )
        return Response(ProviderKeySerializer(credential).data)

    @extend_schema(parameters=[PROVIDER_PARAMETER], request=None,
                   responses={204: None, **KEY_ERRORS},
                   summary="Remove the tenant's key for a provider (multimodal:admin)")
    def delete(self, request, tenant_id: str, provider: str):
        tenant = _policy_tenant(request, tenant_id)
        provider_keys.credential_delete(tenant=tenant, actor=actor_of(request),
                                        provider=provider)
        return Response(status=status.HTTP_204_NO_CONTENT)
