"""Malformed and extreme input is a 4xx naming the problem, never a 500, on SQLite and
PostgreSQL alike (DESIGN §7.2): cursors of any content, too many multipart files or fields,
and date-times with any year 1-9999 and any UTC offset in every filter and body field."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_filters import IsoDateTimeFilter
from django_filters.filters import DateTimeFilter

from agent33.api.datetimes import UtcDateTimeFilter
from agent33.tenancy.models import IdempotencyRecord
from multimodal.models import Artifact
from tests.test_route_isolation import API_ROUTES

pytestmark = pytest.mark.django_db

# Representable in Python but not storable as given: an offset PostgreSQL refuses (it takes
# at most ±15:59), and times that leave Python's range once converted to UTC.
UNSTORABLE_AS_SENT = "2026-07-10T21:03:30-19:54"
OUT_OF_RANGE_IN_UTC = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-10:00"]
EDGES_THAT_FIT = [
    UNSTORABLE_AS_SENT,
    "0001-01-01T00:00:00Z",
    "0001-01-01T05:00:00+05:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T13:59:59-10:00",
    "2026-07-10T21:03:30+23:59",
    "2026-07-10T21:03:30.123456-23:59",
    "1970-01-01T00:00:00",
]


def _cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


CURSORS = {
    "nested json": _cursor(b"[" * 50_000 + b"]" * 50_000),
    "nested json within the length cap": _cursor(b"[" * 300 + b"]" * 300),
    "not base64": "!!!",
    "not json": _cursor(b"\xff\xfe"),
    "an object": _cursor(b'{"a": 1, "b": 2}'),
    "three items": _cursor(b'["2026-01-01T00:00:00Z", "x", 3]'),
    "a number for the time": _cursor(b'[1e999, "x"]'),
    "a list for the id": _cursor(b'["2026-01-01T00:00:00Z", ["x"]]'),
    "year 1 east of utc": _cursor(json.dumps([OUT_OF_RANGE_IN_UTC[0], "x"]).encode()),
    "a nul in the id": _cursor(b'["2026-01-01T00:00:00Z", "a\\u0000b"]'),
    "huge": "A" * 100_000,
}

LISTS = [
    "/v1/operations/traces",
    "/v1/operations/budgets",
    "/v1/operations/improvements",
    "/v1/operations/workflow-runs",
    "/v1/multimodal/requests",
    "/v1/outcomes/events",
]


@pytest.mark.parametrize("content", list(CURSORS.values()), ids=list(CURSORS))
@pytest.mark.parametrize("path", LISTS)
def test_a_cursor_of_any_content_is_a_400_naming_cursor(client_a, path, content):
    response = client_a.get(f"{path}?cursor={content}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["errors"] == {"cursor": ["Invalid cursor."]}


def test_a_cursor_with_an_offset_still_pages_when_it_fits(client_a, tenant_a):
    """The cursor's time is compared in UTC, so a hand-made cursor with a far offset works
    like the same instant in UTC."""
    from tests.factories.outcomes import OutcomeEventFactory

    OutcomeEventFactory(tenant=tenant_a)
    cursor = _cursor(json.dumps([UNSTORABLE_AS_SENT, "outcome-zzzz"]).encode())
    response = client_a.get(f"/v1/outcomes/events?cursor={cursor}")
    assert response.status_code == 200


# --- date-times in query filters and parameters --------------------------------------------

DATETIME_PARAMS = [
    *[(path, name) for path in LISTS[:4] for name in ("started_after", "started_before")],
    ("/v1/outcomes/events", "since"),
    ("/v1/outcomes/events", "until"),
    ("/v1/operations/hub", "since"),
    ("/v1/multimodal/stats", "since"),
]


@pytest.mark.parametrize("value", EDGES_THAT_FIT)
@pytest.mark.parametrize(("path", "name"), DATETIME_PARAMS)
def test_query_datetimes_with_any_offset_in_years_1_to_9999_are_answered(
    client_a, path, name, value
):
    response = client_a.get(f"{path}?{name}={quote(value)}")
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("value", OUT_OF_RANGE_IN_UTC)
@pytest.mark.parametrize(("path", "name"), DATETIME_PARAMS)
def test_query_datetimes_outside_utcs_range_are_a_400_naming_the_parameter(
    client_a, path, name, value
):
    response = client_a.get(f"{path}?{name}={quote(value)}")
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert name in body["detail"]
    assert "Out of range" in body["detail"]


def test_an_unescaped_plus_in_a_query_offset_is_read_as_plus(client_a, tenant_a):
    from tests.factories.operations import WorkflowRunFactory

    WorkflowRunFactory(tenant=tenant_a)
    response = client_a.get("/v1/operations/hub?since=0001-01-01T05:00:00+05:00&status=queued")
    assert response.status_code == 200


def test_every_datetime_filter_of_every_route_uses_the_shared_utc_filter():
    """One place for the rule: a new filterset with django-filter's own date-time filter
    would bring the 500s back."""
    offenders = []
    for route in API_ROUTES:
        filterset = getattr(route.view_class, "filterset_class", None)
        if filterset is None:
            continue
        for name, declared in filterset.base_filters.items():
            is_datetime = isinstance(declared, (DateTimeFilter, IsoDateTimeFilter))
            if is_datetime and not isinstance(declared, UtcDateTimeFilter):
                offenders.append(f"{filterset.__name__}.{name}")
    assert offenders == []


# --- date-times in request bodies ----------------------------------------------------------

def _body_posts(tenant_a):
    from tests.factories.operations import TraceFactory

    trace = TraceFactory(tenant=tenant_a, status="running")
    event = {"domain": "d", "event_type": "e", "metric_type": "success_rate", "value": 1}
    return [
        ("started_at", "/v1/operations/workflow-runs", {"workflow_name": "w"}),
        ("expires_at", "/v1/operations/budgets", {"task_id": "t"}),
        ("completed_at", f"/v1/operations/traces/{trace.pk}/steps", {"step_id": "s"}),
        ("occurred_at", "/v1/outcomes/events", event),
        ("events.0.occurred_at", "/v1/outcomes/events/bulk", {"events": [event]}),
    ]


def _with_time(field: str, body: dict, value: str) -> dict:
    if field.startswith("events.0."):
        return {"events": [{**body["events"][0], "occurred_at": value}]}
    return {**body, field: value}


@pytest.mark.parametrize("value", EDGES_THAT_FIT)
def test_body_datetimes_with_any_offset_in_years_1_to_9999_are_stored(
    client_a, tenant_a, value
):
    for field, path, body in _body_posts(tenant_a):
        if field == "completed_at":
            body = {**body, "step_id": f"s-{value}"}
        response = client_a.post(path, _with_time(field, body, value), format="json")
        assert response.status_code == 201, (field, response.content[:300])


@pytest.mark.parametrize("value", OUT_OF_RANGE_IN_UTC)
def test_body_datetimes_outside_utcs_range_are_a_400_naming_the_field(
    client_a, tenant_a, value
):
    for field, path, body in _body_posts(tenant_a):
        response = client_a.post(path, _with_time(field, body, value), format="json")
        assert response.status_code == 400, (field, response.content[:300])
        assert field in response.json()["errors"], response.json()


def test_a_stored_far_offset_reads_back_as_the_same_instant_in_utc(client_a):
    response = client_a.post(
        "/v1/operations/workflow-runs",
        {"workflow_name": "w", "started_at": UNSTORABLE_AS_SENT},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["started_at"] == "2026-07-11T16:57:30Z"


def _schema_body_datetimes(client) -> set[tuple[str, str]]:
    """(path, field) of every writable date-time in a JSON request body of the schema;
    fields of an array's items as `name.0.field`."""
    schema = client.get("/v1/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]

    def resolve(node):
        return components[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    def walk(node, prefix):
        for name, prop in resolve(node).get("properties", {}).items():
            prop = resolve(prop) if "$ref" in prop else prop
            if prop.get("readOnly"):
                continue
            if prop.get("format") == "date-time":
                yield prefix + name
            elif prop.get("type") == "array" and "$ref" in prop.get("items", {}):
                yield from walk(prop["items"], f"{prefix}{name}.0.")

    found = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if method != "post" or not body:
                continue
            found |= {(path, name) for name in walk(body["schema"], "")}
    return found


def test_the_body_datetime_tests_cover_every_datetime_field_in_the_schema(client_a, tenant_a):
    covered = {
        (path.replace(path.split("/")[4], "{id}") if "/traces/" in path else path, field)
        for field, path, _ in _body_posts(tenant_a)
    }
    assert _schema_body_datetimes(client_a) == covered


# --- multipart limits ------------------------------------------------------------------------

@pytest.mark.parametrize("idempotency_key", [None, "multipart-limit"])
def test_more_than_100_files_is_a_400_naming_the_limit(client_a, idempotency_key):
    files = {f"file{i}": SimpleUploadedFile(f"f{i}.txt", b"x") for i in range(101)}
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = client_a.post("/v1/multimodal/artifacts", files, **extra)
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {
        "detail": "Too many files in the multipart body: at most 100.",
        "code": "too_many_files",
    }
    assert not Artifact.all_tenants.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("idempotency_key", [None, "multipart-limit"])
def test_more_than_2000_fields_is_a_400_naming_the_limit(client_a, idempotency_key):
    fields = {f"field{i}": "x" for i in range(2001)}
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = client_a.post("/v1/multimodal/artifacts", fields, **extra)
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {
        "detail": "Too many fields (query parameters or form fields): at most 2000.",
        "code": "too_many_fields",
    }


def test_more_than_2000_query_parameters_is_a_400_naming_the_limit(client_a):
    query = "&".join(f"p{i}=1" for i in range(2001))
    response = client_a.get(f"/v1/operations/traces?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"
