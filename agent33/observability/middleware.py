"""The outermost middleware: a request id for every request, and one access log line."""

from __future__ import annotations

import logging
import time

from django.utils.log import log_response

from . import context

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"
access_logger = logging.getLogger("agent33.access")


class RequestContextMiddleware:
    """Keeps the caller's `X-Request-ID` when it is valid, else makes one; binds it (with the
    method and path) for every log line of the request; answers with it; and logs one access
    line per request with status and duration (for 4xx and 5xx, after Django's
    `django.request` line, logged here so that it too names its request). The path is logged
    without its query string, which may carry anything a client put there."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        offered = request.headers.get(REQUEST_ID_HEADER)
        request_id = offered if context.valid_request_id(offered) else context.new_request_id()
        request.request_id = request_id
        token = context.bind(
            context.RequestContext(request_id=request_id, method=request.method,
                                   path=request.path)
        )
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            if response.status_code >= 400:
                # Django's handler logs "Internal Server Error: /path" (and every 4xx) after
                # the last middleware returned, when this request's context is gone; logged
                # here, the line carries its request id, tenant, method and path, and
                # Django's own call sees it was logged and stays silent.
                log_response("%s: %s", response.reason_phrase, request.path,
                             response=response, request=request)
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            access_logger.info(
                "%s %s %s %.2f ms", request.method, request.path, response.status_code,
                duration_ms, extra={"status": response.status_code, "duration_ms": duration_ms},
            )
            return response
        finally:
            context.reset(token)
