from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from agent33.auth.permissions import HasRequiredScopes, OperatorOnly
from agent33.auth.scopes import METRICS_READ

from .metrics import render_metrics

__all__ = ["MetricsView"]


@extend_schema(exclude=True)  # Prometheus' format, outside /v1: not part of the JSON API
class MetricsView(APIView):
    """`GET /metrics`: the whole service's series in Prometheus' text format (OpenMetrics when
    asked), for an all-tenants token with `metrics:read`."""

    required_scopes = METRICS_READ
    permission_classes = [HasRequiredScopes, OperatorOnly]

    def perform_content_negotiation(self, request, force=False):
        # Errors are JSON whatever the scraper accepts (Prometheus asks for text formats).
        return super().perform_content_negotiation(request, force=True)

    def get(self, request):
        body, content_type = render_metrics(request.headers.get("Accept"))
        response = HttpResponse(body, content_type=content_type)
        response["Cache-Control"] = "no-store"
        return response
