"""drf-spectacular: the bearer scheme of our authentication class, and the one error body
on every documented error response."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agent33.auth.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "a33_<prefix>_<secret>",
            "description": "An API token issued with `manage.py issue_token` or in the admin.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, for humans."},
        "code": {"type": "string", "description": "snake_case; clients branch on it."},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Validation errors by field (dotted paths for nested fields).",
        },
    },
    "required": ["detail", "code"],
}
_MEANINGS = {
    "400": "Invalid input; the detail names the field.",
    "401": "Missing, malformed, unknown, expired or revoked token.",
    "403": "The token lacks the required scope; the detail names it.",
    "404": "No such object (or another tenant's).",
    "409": "The current state forbids the request, or a request with this Idempotency-Key "
    "is in flight.",
    "413": "Request body over the configured limit.",
    "422": "This Idempotency-Key was used with a different request.",
    "429": "Throttled; see Retry-After.",
}


def add_error_responses(result, generator, request, public):
    """Every operation documents the one error format for every error it can answer, so
    clients (and schema fuzzers) can rely on the schema: added centrally, not per view.

    A view declares only what it wants to say about an error (`OpenApiResponse(description=
    ...)`, no serializer); this hook adds the errors every operation can answer and gives
    every error response (4xx, 429, 5xx) the shared `Error` body where it has none."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["400", "404"]
            if operation.get("security") != [{}]:
                codes += ["401", "403", "429"]
            if method in ("post", "put", "patch"):
                codes += ["409", "413"]
            if method == "post":
                codes.append("422")
                operation.setdefault("parameters", []).append(
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Makes a retry safe: the same key and body within 24 h "
                        "replay the first response.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                )
            responses = operation["responses"]
            for code in codes:
                responses.setdefault(code, {"description": _MEANINGS[code]})
            for code, response in responses.items():
                # A view that documents an error with its own description only (for its
                # wording) still answers in the one format.
                if str(code)[0] in "45" and not _has_body_schema(response):
                    response["content"] = {"application/json": {"schema": reference}}
    return result


def _has_body_schema(response: dict) -> bool:
    return any("schema" in media for media in response.get("content", {}).values())
