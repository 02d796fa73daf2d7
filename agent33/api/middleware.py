"""Refuse oversized bodies before anything reads them (413 JSON)."""

from django.conf import settings

from .exceptions import json_error

__all__ = ["BodySizeLimitMiddleware"]


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.AGENT33_MAX_BODY_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return json_error(400, "Invalid Content-Length header.", "invalid_content_length")
        if size > limit:
            return json_error(
                413,
                f"Request body of {size} bytes exceeds the limit of {limit} bytes.",
                "request_too_large",
            )
        return self.get_response(request)
