import json

import pytest

pytestmark = pytest.mark.django_db


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_unknown_api_route_is_json_404(client):
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")


def test_django_refusing_a_request_is_a_json_400_on_the_api(client):
    """Django's own 400s (here: a Host not allowed) use the API's error format there, and
    keep Django's page elsewhere."""
    assert_error(client.get("/v1/auth/whoami", HTTP_HOST="not-allowed.example"), 400,
                 "bad_request")
    page = client.get("/admin/", HTTP_HOST="not-allowed.example")
    assert page.status_code == 400
    assert page["Content-Type"].startswith("text/html")


def test_wrong_method_is_json_405(client_a):
    assert_error(client_a.delete("/v1/auth/whoami"), 405, "method_not_allowed")


@pytest.mark.urls("tests.tenancy.error_urls")
def test_invalid_json_is_400(client_a):
    response = client_a.generic("POST", "/v1/test/echo", "{not json", "application/json")
    assert_error(response, 400, "parse_error")


@pytest.mark.urls("tests.tenancy.error_urls")
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_with_non_finite_numbers_is_400(client_a, literal):
    response = client_a.generic(
        "POST", "/v1/test/echo", f'{{"value": {literal}}}', "application/json"
    )
    assert_error(response, 400, "parse_error")


@pytest.mark.urls("tests.tenancy.error_urls")
def test_body_over_the_limit_is_413_without_reading_it(client_a):
    body = b'{"x": "' + b"a" * (30 * 1024 * 1024) + b'"}'
    response = client_a.generic("POST", "/v1/test/echo", body, "application/json")
    body = assert_error(response, 413, "request_too_large")
    assert "exceeds the limit" in body["detail"]


@pytest.mark.urls("tests.tenancy.error_urls")
def test_unexpected_exception_is_500_without_internals(client_a, caplog):
    client_a.raise_request_exception = False
    response = client_a.get("/v1/test/boom")
    body = assert_error(response, 500, "server_error")
    assert "hunter2" not in json.dumps(body)
    assert "RuntimeError" not in response.content.decode()
    assert any("Unhandled error" in r.message for r in caplog.records)


@pytest.mark.urls("tests.tenancy.error_urls")
def test_view_without_declared_scopes_is_closed(client_a):
    body = assert_error(client_a.get("/v1/test/undeclared"), 403, "scope_not_declared")
    assert "declares no scope" in body["detail"]


def test_missing_scope_is_403_naming_it(api_client_for, tenant_a):
    # whoami needs only a valid token; use a scoped route from the test urls instead.
    client = api_client_for(tenant_a, scopes=["outcomes:read"])
    assert client.get("/v1/auth/whoami").status_code == 200


def test_throttle_returns_429_with_retry_after(client_a, monkeypatch, settings):
    from django.core.cache import cache

    from agent33.auth.throttling import TokenRateThrottle

    cache.clear()
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    statuses = [client_a.get("/v1/auth/whoami").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client_a.get("/v1/auth/whoami")
    body = assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert "throttled" in body["detail"].lower()
    cache.clear()
