import json

import pytest
from openapi_spec_validator import validate


def test_healthz_needs_no_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_schema_is_valid_openapi_3_json_with_bearer_auth(client):
    response = client.get("/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    schema = json.loads(response.content)
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/v1/auth/whoami" in schema["paths"]


@pytest.mark.django_db
def test_swagger_ui_renders(client):
    response = client.get("/v1/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
