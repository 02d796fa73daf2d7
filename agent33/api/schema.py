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


def _component(result: dict, node: dict) -> dict:
    reference = node.get("$ref", "")
    if reference.startswith("#/components/schemas/"):
        return result["components"]["schemas"].get(reference.rsplit("/", 1)[1], {})
    return node


def _created_object(result: dict, operation: dict, code: str = "201") -> dict | None:
    """The JSON schema of what a create answers with (`code` with an `id`), else None."""
    created = operation.get("responses", {}).get(code, {})
    schema = created.get("content", {}).get("application/json", {}).get("schema")
    if not schema:
        return None
    body = _component(result, schema)
    return body if "id" in body.get("properties", {}) else None


def add_object_links(result, generator, request, public):
    """OpenAPI links from every create to the routes that act on what it created, so
    clients (and Schemathesis' stateful phase) can follow an id from the answer that made it
    instead of guessing one:

    - a create at `/x` links to every operation under `/x/{param}` (its id as `param`);
    - a create whose object has a lifecycle (`status` or `state`: a process) also links to
      the hub's routes under `/processes/{process_id}`;
    - a PUT (which creates or replaces what its path names) links to the other methods on
      the same path, with the same path parameters;
    - work accepted to be done later (202 with an `id`: a batch) links to the operations
      under `/x/{param}` like a create, never to the hub's process routes.
    """
    paths = result.get("paths", {})
    operations = [
        (path, method, operation)
        for path, methods in paths.items()
        for method, operation in methods.items()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    process_routes = [
        (path, operation) for path, _method, operation in operations
        if "/processes/{process_id}" in path
    ]
    for path, method, operation in operations:
        if method == "put":
            _link_same_path(operation, paths[path], path)
        if method != "post" or "{" in path:
            continue
        code = "201"
        created = _created_object(result, operation)
        if created is None:
            code = "202"
            created = _created_object(result, operation, code)
        if created is None:
            continue
        targets = [
            (other_path, other) for other_path, _m, other in operations
            if other_path.startswith(f"{path}/{{")
        ]
        properties = created.get("properties", {})
        if code == "201" and ("status" in properties or "state" in properties):
            targets += process_routes
        links = {}
        for target_path, target in targets:
            parameter = target_path[target_path.index("{") + 1 : target_path.index("}")]
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": {f"path.{parameter}": "$response.body#/id"},
                "description": f"The created object's id as `{parameter}`.",
            }
        if links:
            operation["responses"][code]["links"] = links
    return result


def _link_same_path(operation: dict, methods: dict, path: str) -> None:
    answered = next((code for code in ("200", "201") if code in operation["responses"]), None)
    if answered is None:
        return
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    links = {
        other["operationId"]: {
            "operationId": other["operationId"],
            "parameters": {f"path.{name}": f"$request.path.{name}" for name in names},
            "description": "The same object, by the path that stored it.",
        }
        for method, other in methods.items()
        if method not in ("put", "parameters") and isinstance(other, dict)
        and "operationId" in other
    }
    if links:
        operation["responses"][answered].setdefault("links", {}).update(links)
