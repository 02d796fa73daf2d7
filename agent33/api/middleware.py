"""Middleware of the API itself: body limits before anything reads a body, and responses
no cache keeps."""

import tempfile

from django.conf import settings

from .exceptions import json_error

__all__ = ["BodySizeLimitMiddleware", "ChunkedBodyBuffer", "NoStoreMiddleware"]

# Paths whose answers are tenants' data or depend on who asks.
PRIVATE_PREFIXES = ("/v1/", "/metrics", "/healthz", "/readyz")


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every API answer (JSON, errors, artifact downloads,
    /metrics) and on anything answered to a request that carried credentials: a shared
    proxy or the browser's disk cache must never keep one tenant's data for the next
    person. Set outright, not merged: no API view has a reason to be cached."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(PRIVATE_PREFIXES) or "HTTP_AUTHORIZATION" in request.META:
            response["Cache-Control"] = "no-store"
        return response


def _is_chunked_without_length(environ) -> bool:
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encoding and not environ.get("CONTENT_LENGTH")


class ChunkedBodyBuffer:
    """WSGI wrapper (agent33/wsgi.py): a chunked request body, which has no Content-Length,
    is read up to the body limit and handed to Django as a body of known length.

    Django reads a body only as far as CONTENT_LENGTH says, so without this a chunked
    request reached the view with an empty body and "succeeded" with defaults. Only a server
    that removes the chunk framing and ends the stream (`wsgi.input_terminated`: gunicorn)
    can be read this way; elsewhere BodySizeLimitMiddleware refuses the request with 411.
    A body over the limit gets the limit plus one byte as its length, so that middleware
    answers 413 without the rest being read."""

    CHUNK = 64 * 1024

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if _is_chunked_without_length(environ) and environ.get("wsgi.input_terminated"):
            limit = settings.AGENT33_MAX_BODY_BYTES
            # Spooled: small bodies stay in memory, large ones (uploads) go to a temp file.
            # Lives as long as the request environ; a TemporaryFile deletes itself when freed.
            body = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE
            )
            size = 0
            while size <= limit:
                chunk = environ["wsgi.input"].read(min(self.CHUNK, limit + 1 - size))
                if not chunk:
                    break
                body.write(chunk)
                size += len(chunk)
            body.seek(0)
            environ["wsgi.input"] = body
            environ["CONTENT_LENGTH"] = str(size)
        return self.application(environ, start_response)


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_chunked_without_length(request.META):
            # A server that did not end the chunked stream for us (ChunkedBodyBuffer): we
            # cannot know where the body ends, and must not read it as empty.
            return json_error(
                411,
                "A chunked request body cannot be read here; send it with a Content-Length.",
                "length_required",
            )
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
