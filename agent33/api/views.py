from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.auth.permissions import AUTHENTICATED

from .exceptions import json_error, suspicious_request_error

logger = logging.getLogger("agent33.api")

__all__ = [
    "WhoAmIView",
    "healthz",
    "json_bad_request",
    "json_not_found",
    "json_server_error",
    "readyz",
]


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """`ok`, or `unavailable` (503). The probe is anonymous, so why it failed (a host, a
    port, a driver's message) goes to the log, never to the caller."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any database failure means "not ready"
        logger.exception("Readiness probe: the database is not reachable")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


class WhoAmIView(APIView):
    required_scopes = AUTHENTICATED

    @extend_schema(
        responses=inline_serializer(
            "WhoAmI",
            {
                "tenant_id": serializers.CharField(allow_null=True),
                "operator": serializers.BooleanField(),
                "token_name": serializers.CharField(),
                "token_prefix": serializers.CharField(),
                "scopes": serializers.ListField(child=serializers.CharField()),
                "expires_at": serializers.DateTimeField(allow_null=True),
            },
        )
    )
    def get(self, request):
        token = request.user.token
        return Response(
            {
                "tenant_id": token.tenant_id,
                "operator": token.tenant_id is None,
                "token_name": token.name,
                "token_prefix": token.display_prefix,
                "scopes": list(token.scopes),
                "expires_at": token.expires_at,
            }
        )


def _is_api(request) -> bool:
    return request.path.startswith("/v1/") or request.path in ("/healthz", "/readyz")


def json_bad_request(request, exception=None):
    """Django's own 400s (a body its parser refuses when middleware reads it first, a
    suspicious header) in the API's error format rather than Django's HTML page."""
    if _is_api(request):
        if isinstance(exception, MultiPartParserError):  # same wording as DRF's parser
            return json_error(400, f"Multipart form parse error - {exception}", "parse_error")
        return json_error(*suspicious_request_error(exception))
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def json_not_found(request, exception=None):
    if _is_api(request):
        return json_error(404, "Not found.", "not_found")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_server_error(request):
    if _is_api(request):
        return json_error(500, "Internal server error.", "server_error")
    from django.views.defaults import server_error

    return server_error(request)
