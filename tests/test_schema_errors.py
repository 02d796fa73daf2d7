"""Every documented error response in /v1/schema/ carries the one error body (DESIGN §7.1)."""

from __future__ import annotations

import json

import pytest

ERROR_REF = {"$ref": "#/components/schemas/Error"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.mark.django_db
def test_every_documented_error_response_has_the_error_body(schema):
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"detail", "code", "errors"}
    assert sorted(error["required"]) == ["code", "detail"]

    checked, missing = 0, []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            for code, response in operation["responses"].items():
                if not (code.startswith("4") or code.startswith("5")):
                    continue
                checked += 1
                body = response.get("content", {}).get("application/json", {})
                if body.get("schema") != ERROR_REF:
                    missing.append(f"{method.upper()} {path} {code}")
    assert missing == []
    assert checked > 200  # every operation documents several (400, 401, 403, 404, 429, ...)


@pytest.mark.django_db
def test_declared_error_descriptions_survive(schema):
    """A view's own words about an error stay; only the body is filled in centrally."""
    control = schema["paths"]["/v1/operations/processes/{process_id}/control"]["post"]["responses"]
    assert control["409"]["description"].startswith("The current state forbids it")
    cancel = schema["paths"]["/v1/multimodal/requests/{id}/cancel"]["post"]["responses"]
    assert cancel["409"]["description"] == "The request's state forbids this"
    assert cancel["409"]["content"]["application/json"]["schema"] == ERROR_REF
