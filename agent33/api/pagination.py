"""Keyset cursor pagination: a plain JSON array body plus `Link: <url>; rel="next"`.

The cursor carries the last row's (timestamp, id). Every page is an index range scan, and every
row is walked exactly once however many share a timestamp (DRF's CursorPagination counts an
offset through ties, capped at 1,000, so a bulk load at one instant would be walked wrongly).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from django.db.models import Q
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from .datetimes import to_utc

__all__ = ["MAX_LIMIT", "LinkHeaderCursorPagination", "parse_limit"]

MAX_LIMIT = 100
# What this class writes is ~100 characters; anything far longer is not one of ours.
MAX_CURSOR_LENGTH = 1000


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


class LinkHeaderCursorPagination(BasePagination):
    """Newest first by `ordering[0]` (a timestamp field), ties broken by primary key.

    Subclasses set `ordering = ("-<timestamp field>", "-id")`."""

    page_size = 50
    cursor_query_param = "cursor"
    ordering = ("-created_at", "-id")

    @property
    def time_field(self) -> str:
        field = self.ordering[0]
        if not field.startswith("-"):
            raise TypeError("LinkHeaderCursorPagination walks newest first: '-<field>'")
        return field[1:]

    def paginate_queryset(self, queryset, request, view=None):
        self.page_size = parse_limit(request.query_params.get("limit"), default=self.page_size)
        self.base_url = request.build_absolute_uri()
        position = self._decode(request.query_params.get(self.cursor_query_param))
        queryset = queryset.order_by(*self.ordering)
        if position is not None:
            moment, pk = position
            field = self.time_field
            # The `lte` bound lets the index scan start at the cursor; the OR only discards
            # the ties already returned.
            queryset = queryset.filter(**{f"{field}__lte": moment}).filter(
                Q(**{f"{field}__lt": moment}) | Q(pk__lt=pk)
            )
        rows = list(queryset[: self.page_size + 1])
        page = rows[: self.page_size]
        last = page[-1] if len(rows) > self.page_size else None
        self.next_position = (getattr(last, self.time_field), last.pk) if last else None
        return page

    def get_next_link(self) -> str | None:
        if not self.next_position:
            return None
        moment, pk = self.next_position
        raw = json.dumps([moment.isoformat(), pk], separators=(",", ":")).encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return replace_query_param(self.base_url, self.cursor_query_param, token)

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
                "name": self.cursor_query_param,
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

    def _decode(self, token: str | None) -> tuple[datetime, str] | None:
        if token is None:
            return None
        # A cursor is whatever the client sends: any failure to read it as the pair this
        # class wrote is the client's 400, never a 500 (RecursionError: `[[[[…` nested deep).
        try:
            if len(token) > MAX_CURSOR_LENGTH:
                raise ValueError
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            moment_text, pk = json.loads(raw)
            if not isinstance(moment_text, str) or not isinstance(pk, str):
                raise ValueError
            moment = parse_datetime(moment_text)
            if moment is None or moment.tzinfo is None:  # this class writes offsets
                raise ValueError
            moment = to_utc(moment)
            if len(pk) > 64 or "\x00" in pk:
                raise ValueError
        except (binascii.Error, ValueError, TypeError, RecursionError):
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None
        return moment, pk
