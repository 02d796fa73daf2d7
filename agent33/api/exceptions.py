"""The one error format: `{"detail": "...", "code": "..."}` (+ `errors` for validation)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from agent33.errors import DomainError

__all__ = [
    "Conflict",
    "PayloadTooLarge",
    "api_exception_handler",
    "error_body",
    "json_error",
    "suspicious_request_error",
]

logger = logging.getLogger("agent33.api")


class Conflict(exceptions.APIException):
    """409: the object's current state forbids the request."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "request_too_large"


_CODES: dict[type, str] = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def error_body(detail: str, code: str, errors: dict | None = None) -> dict:
    body: dict = {"detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return body


def json_error(status_code: int, detail: str, code: str, **headers: str) -> JsonResponse:
    """For the few places outside DRF (middleware, handler404) that must answer in JSON."""
    response = JsonResponse(error_body(detail, code), status=status_code)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def suspicious_request_error(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, detail, code) for a request Django's parsers refuse as suspicious, wherever
    it is noticed: in a middleware that reads the body first, or in DRF's parser."""
    from django.conf import settings

    if isinstance(exc, RequestDataTooBig):
        return 413, PayloadTooLarge.default_detail, PayloadTooLarge.default_code
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return 400, f"Too many files in the multipart body: at most {limit}.", "too_many_files"
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        detail = f"Too many fields (query parameters or form fields): at most {limit}."
        return 400, detail, "too_many_fields"
    return 400, "Bad request: the request's headers or body could not be accepted.", "bad_request"


def _flatten(errors) -> dict[str, list[str]]:
    """DRF error trees → {field: [messages]}, nested fields joined with dots."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for index, inner in enumerate(value):
                if inner:
                    walk(f"{prefix}.{index}" if prefix else str(index), inner)
        else:
            messages = value if isinstance(value, list) else [value]
            flat.setdefault(prefix or "non_field_errors", []).extend(str(m) for m in messages)

    walk("", errors)
    return flat


def _validation_response(errors) -> Response:
    flat = _flatten(errors)
    first_field, first_messages = next(iter(flat.items()), ("", ["Invalid input."]))
    if first_field in ("non_field_errors", ""):
        detail = first_messages[0]
    else:
        detail = f"{first_field}: {first_messages[0]}"
    return Response(error_body(detail, "invalid", flat), status=status.HTTP_400_BAD_REQUEST)


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        errors = exc.errors or ({exc.field: [exc.detail]} if exc.field else None)
        return Response(error_body(exc.detail, exc.code, errors), status=exc.status_code,
                        headers=exc.headers)
    if isinstance(exc, DjangoValidationError):
        return _validation_response(as_serializer_error(exc))
    if isinstance(exc, SuspiciousOperation):
        status_code, detail, code = suspicious_request_error(exc)
        return Response(error_body(detail, code), status=status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        response = drf_exception_handler(exc, context)
        validation = _validation_response(exc.detail)
        validation.headers = response.headers if response is not None else validation.headers
        return validation

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("Internal server error.", "server_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = _code_for(exc)
    if isinstance(detail, (list, dict)):
        return _validation_response(detail)
    response.data = error_body(str(detail), code)
    return response


def _code_for(exc) -> str:
    for klass in type(exc).__mro__:
        if klass in _CODES:
            return _CODES[klass]
    code = getattr(getattr(exc, "detail", None), "code", None)
    if isinstance(code, str) and code not in ("error", "invalid"):
        return code
    return getattr(exc, "default_code", "error")
