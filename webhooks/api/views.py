"""Webhooks API (DESIGN §8.5): endpoints, their deliveries, replays. Views parse and
authorise, call one service, and serialise; sending is the worker's."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from agent33.api.pagination import LinkHeaderCursorPagination
from agent33.api.viewsets import TenantScopedViewSet, tenant_of
from agent33.auth.scopes import WEBHOOKS_READ, WEBHOOKS_WRITE

from .. import services
from ..models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from . import serializers as s

__all__ = ["DeliveryViewSet", "EndpointViewSet"]


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: "Invalid input (the detail names the field; `url_not_allowed` for a private "
             "host).",
        401: "Missing or invalid token.",
        403: "Missing required scope.",
        404: "Not found (or another tenant's).",
        409: "The state forbids it (`too_many_endpoints`, `endpoint_disabled`, "
             "`delivery_in_progress`).",
    }
    return {code: OpenApiResponse(description=meaning[code]) for code in codes}


def _with_secret(endpoint, secret: str, code: int) -> Response:
    """The endpoint with its new secret. An Idempotency-Key replay of this request answers
    the same without the secret (`secret: null`): it is shown once and never stored."""
    endpoint.secret = secret
    response = Response(s.EndpointSecretSerializer(endpoint).data, status=code)
    endpoint.secret = None
    response.idempotency_content = JSONRenderer().render(
        s.EndpointSecretSerializer(endpoint).data)
    return response


class CreatedAtPagination(LinkHeaderCursorPagination):
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints",
                       responses={200: s.EndpointSerializer(many=True),
                                  **_errors(400, 401, 403)}),
    retrieve=extend_schema(summary="Read one webhook endpoint",
                           responses={200: s.EndpointSerializer, **_errors(401, 403, 404)}),
    create=extend_schema(summary="Create a webhook endpoint (its secret is in this answer only)",
                         request=s.EndpointCreateSerializer,
                         responses={201: s.EndpointSecretSerializer,
                                    **_errors(400, 401, 403, 409)}),
    partial_update=extend_schema(
        summary="Change an endpoint's url, event_types, description or enabled",
        request=s.EndpointUpdateSerializer,
        responses={200: s.EndpointSerializer, **_errors(400, 401, 403, 404)}),
    destroy=extend_schema(summary="Delete a webhook endpoint and its delivery log",
                          responses={204: None, **_errors(401, 403, 404)}),
)
class EndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    model = WebhookEndpoint
    serializer_class = s.EndpointSerializer
    pagination_class = CreatedAtPagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {
        "list": WEBHOOKS_READ,
        "retrieve": WEBHOOKS_READ,
        "deliveries": WEBHOOKS_READ,
        "create": WEBHOOKS_WRITE,
        "partial_update": WEBHOOKS_WRITE,
        "destroy": WEBHOOKS_WRITE,
        "rotate_secret": WEBHOOKS_WRITE,
    }

    def create(self, request, *args, **kwargs):
        tenant = tenant_of(request)
        data = s.EndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(tenant=tenant, **data.validated_data)
        return _with_secret(endpoint, secret, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        # partial: a form body that leaves `enabled` out must not read as false.
        data = s.EndpointUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        updated = services.endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(s.EndpointSerializer(updated).data)

    def destroy(self, request, *args, **kwargs):
        services.endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Rotate the signing secret (the old one signs beside it for 24 h)",
                   request=None,
                   responses={200: s.EndpointSecretSerializer, **_errors(401, 403, 404)})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        endpoint, secret = services.endpoint_rotate_secret(endpoint=self.get_object())
        return _with_secret(endpoint, secret, status.HTTP_200_OK)

    @extend_schema(summary="The endpoint's deliveries, newest first, each with its attempts",
                   responses={200: s.DeliverySerializer(many=True),
                              **_errors(400, 401, 403, 404)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self.get_object()
        queryset = (WebhookDelivery.objects.filter(endpoint=endpoint)
                    .prefetch_related(Prefetch("attempts",
                                               queryset=WebhookAttempt.objects.order_by(
                                                   "attempted_at", "id"))))
        paginator = CreatedAtPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(s.DeliverySerializer(page, many=True).data)


class DeliveryViewSet(TenantScopedViewSet):
    model = WebhookDelivery
    serializer_class = s.DeliverySerializer
    required_scopes = {"replay": WEBHOOKS_WRITE}

    def get_queryset(self):
        return super().get_queryset().select_related("endpoint")

    @extend_schema(summary="Send a delivery's message again (same webhook-id and body)",
                   request=None,
                   responses={202: s.DeliverySerializer, **_errors(401, 403, 404, 409)})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        replay = services.delivery_replay(delivery=self.get_object())
        return Response(s.DeliverySerializer(replay).data, status=status.HTTP_202_ACCEPTED)
