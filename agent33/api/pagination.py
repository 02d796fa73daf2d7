"""Cursor pagination: a plain JSON array body plus `Link: <url>; rel="next"`."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

__all__ = ["LinkHeaderCursorPagination", "parse_limit"]

MAX_LIMIT = 100


def parse_limit(raw: str | None, *, default: int, maximum: int = MAX_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({"limit": [f"Must be an integer between 1 and {maximum}."]}) from None
    if not 1 <= value <= maximum:
        raise ValidationError({"limit": [f"Must be between 1 and {maximum}."]})
    return value


class LinkHeaderCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT
    # Unique tie-breaker: rows sharing a timestamp are still walked exactly once.
    ordering = ("-created_at", "-pk")

    def get_page_size(self, request):
        return parse_limit(request.query_params.get("limit"), default=self.page_size)

    def get_paginated_response(self, data):
        headers = {}
        next_link = self.get_next_link()
        if next_link:
            headers["Link"] = f'<{next_link}>; rel="next"'
        return Response(data, headers=headers)

    def get_paginated_response_schema(self, schema):
        return schema

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "Opaque cursor from a previous response's Link header.",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Items per page, 1..{MAX_LIMIT} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ]

    def decode_cursor(self, request):
        # DRF answers a bad cursor with 404; it is bad input, so 400 naming the parameter.
        from rest_framework.exceptions import NotFound

        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None
