"""Recording and listing events through the API (DESIGN §5.3)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from agent33.tenancy.context import all_tenants_scope
from outcomes.models import OutcomeCount, OutcomeEvent
from tests.factories.outcomes import OutcomeEventFactory

from .conftest import at, event_body

EVENTS = "/v1/outcomes/events"
BULK = "/v1/outcomes/events/bulk"


def post_raw(client, path: str, text: str):
    return client.generic("POST", path, text, content_type="application/json")


def stored_events() -> int:
    return OutcomeEvent.all_tenants.count()


@pytest.mark.django_db
def test_bulk_ignores_a_tenant_in_the_body(outcomes_a, tenant_b):
    events = [event_body(tenant_id=tenant_b.slug, tenant="tenant-b")]
    response = outcomes_a.post(BULK, {"events": events, "tenant_id": tenant_b.slug}, format="json")
    assert response.status_code == 201
    assert list(OutcomeEvent.all_tenants.values_list("tenant_id", flat=True)) == ["tenant-a"]


@pytest.mark.django_db
def test_operator_tokens_cannot_record(operator_client):
    for path, body in ((EVENTS, event_body()), (BULK, {"events": [event_body()]})):
        response = operator_client.post(path, body, format="json")
        assert response.status_code == 400
        assert response.json()["code"] == "tenant_required"
    assert stored_events() == 0


# --- recording one event --------------------------------------------------------------


@pytest.mark.django_db
def test_record_event_returns_the_stage1_shape(outcomes_a):
    body = event_body(
        metric_type="latency_ms",
        value=812,
        occurred_at="2026-01-01T12:30:00+02:00",
        metadata={"trace": "trace-1", "nested": {"ok": [1, 2.5, None, True]}},
    )
    response = outcomes_a.post(EVENTS, body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert set(created) == {
        "id", "tenant_id", "domain", "event_type", "metric_type", "value", "occurred_at",
        "metadata",
    }
    assert created["id"].startswith("outcome-") and len(created["id"]) == len("outcome-") + 32
    assert created["tenant_id"] == "tenant-a"
    assert created["value"] == 812.0
    assert created["occurred_at"] == "2026-01-01T10:30:00Z"
    assert created["metadata"] == body["metadata"]
    assert outcomes_a.get(f"{EVENTS}/{created['id']}").json() == created


@pytest.mark.django_db
def test_occurred_at_defaults_to_now_and_metadata_to_an_object(outcomes_a):
    response = outcomes_a.post(EVENTS, event_body(metadata=None), format="json")
    assert response.status_code == 201
    created = response.json()
    assert created["metadata"] == {}
    event = OutcomeEvent.all_tenants.get(pk=created["id"])
    assert abs((event.occurred_at - event.created_at).total_seconds()) < 1


@pytest.mark.django_db
def test_labels_are_trimmed_and_naive_times_are_utc(outcomes_a):
    response = outcomes_a.post(
        EVENTS,
        event_body(domain="  support ", occurred_at="2026-03-04T05:06:07"),
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["domain"] == "support"
    assert response.json()["occurred_at"] == "2026-03-04T05:06:07Z"


BAD_EVENTS = [
    # (field, overrides) — overrides of None mean "remove the field"
    ("metric_type", {"metric_type": "revenue"}),
    ("metric_type", {"metric_type": None}),
    ("metric_type", {"metric_type": 3}),
    ("domain", {"domain": ""}),
    ("domain", {"domain": "   "}),
    ("domain", {"domain": "d" * 201}),
    ("domain", {"domain": None}),
    ("domain", {"domain": 12}),
    ("domain", {"domain": "nul\u0000byte"}),
    ("event_type", {"event_type": ""}),
    ("event_type", {"event_type": "e" * 201}),
    ("event_type", {"event_type": ["a"]}),
    ("value", {"value": "0.5"}),
    ("value", {"value": "abc"}),
    ("value", {"value": True}),
    ("value", {"value": False}),
    ("value", {"value": None}),
    ("value", {"value": [1]}),
    ("value", {"value": {"n": 1}}),
    ("occurred_at", {"occurred_at": "yesterday"}),
    ("occurred_at", {"occurred_at": "2026-13-01T00:00:00Z"}),
    ("occurred_at", {"occurred_at": ""}),
    ("occurred_at", {"occurred_at": 1767225600}),
    ("occurred_at", {"occurred_at": "0001-01-01T00:00:00+14:00"}),
    ("metadata", {"metadata": []}),
    ("metadata", {"metadata": "text"}),
    ("metadata", {"metadata": 5}),
    ("metadata", {"metadata": {"blob": "x" * (16 * 1024)}}),
    ("metadata", {"metadata": {"nul": "a\u0000b"}}),
    ("metadata", {"metadata": {"k\u0000": 1}}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "overrides"), BAD_EVENTS)
def test_bad_event_is_a_400_naming_the_field(outcomes_a, field, overrides):
    body = event_body(**overrides)
    if overrides.get(field, "") is None and field != "value":
        body.pop(field)
    response = outcomes_a.post(EVENTS, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == "invalid"
    assert field in error["errors"], error
    assert error["detail"].startswith(f"{field}: ")
    assert stored_events() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "literal", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1e999999"]
)
def test_non_finite_values_are_rejected_naming_the_field(outcomes_a, literal):
    text = (
        '{"domain": "d", "event_type": "e", "metric_type": "cost_usd", "value": '
        + literal
        + "}"
    )
    response = post_raw(outcomes_a, EVENTS, text)
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "value": ["Must be a finite number (not NaN or ±Infinity)."]
    }
    assert stored_events() == 0


@pytest.mark.django_db
def test_non_finite_numbers_in_metadata_are_rejected(outcomes_a):
    text = '{"domain": "d", "event_type": "e", "metric_type": "cost_usd", "value": 1, ' \
        '"metadata": {"score": NaN}}'
    response = post_raw(outcomes_a, EVENTS, text)
    assert response.status_code == 400
    assert "metadata" in response.json()["errors"]


@pytest.mark.django_db
def test_metadata_nesting_and_size_limits(outcomes_a):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    response = outcomes_a.post(EVENTS, event_body(metadata=deep), format="json")
    assert response.status_code == 400
    assert "Nested more than" in response.json()["errors"]["metadata"][0]
    # 16 KB is the limit of the compact JSON text: just under it is fine.
    fits = {"blob": "x" * (16 * 1024 - 20)}
    assert outcomes_a.post(EVENTS, event_body(metadata=fits), format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"text"',
        "12",
        "null",
        "{",
        '{"domain": "d"',
        "\udcff",
        "[" * 50_000 + "]" * 50_000,
        '{"metadata": ' + '{"a": ' * 20_000 + "1" + "}" * 20_000 + "}",
    ],
)
def test_malformed_bodies_are_400_never_500(outcomes_a, text):
    for path in (EVENTS, BULK):
        response = post_raw(outcomes_a, path, text.encode("utf-8", "surrogateescape"))
        assert response.status_code == 400, (path, response.content[:200])
        assert response.json()["code"] in ("invalid", "parse_error")


# --- bulk -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bulk_records_every_event(outcomes_a):
    events = [event_body(value=i / 10, occurred_at=at(i).isoformat()) for i in range(5)]
    response = outcomes_a.post(BULK, {"events": events}, format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 5}
    with all_tenants_scope():
        values = list(OutcomeEvent.objects.order_by("occurred_at").values_list("value", flat=True))
    assert values == [0.0, 0.1, 0.2, 0.3, 0.4]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad_event", "field"),
    [
        ({"value": "1"}, "events.3.value"),
        ({"metric_type": "nope"}, "events.3.metric_type"),
        ({"domain": ""}, "events.3.domain"),
        ({"occurred_at": "soon"}, "events.3.occurred_at"),
        ({"metadata": [1]}, "events.3.metadata"),
    ],
)
def test_bulk_is_all_or_nothing_and_names_the_index(outcomes_a, bad_event, field):
    OutcomeEventFactory(tenant=outcomes_a.token.tenant)  # existing data must stay as it is
    counts_before = list(OutcomeCount.all_tenants.values_list("count", flat=True))
    events = [event_body(value=i / 10) for i in range(7)]
    events[3] = event_body(**bad_event)
    events[5] = event_body(value="also bad")  # only the first bad event is reported
    response = outcomes_a.post(BULK, {"events": events}, format="json")
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "invalid"
    assert list(error["errors"]) == [field]
    assert error["detail"].startswith(f"{field}: ")
    assert "events.3" in error["detail"]
    assert stored_events() == 1
    assert list(OutcomeCount.all_tenants.values_list("count", flat=True)) == counts_before


@pytest.mark.django_db
def test_bulk_rejects_a_non_finite_value_by_index(outcomes_a):
    good = json.dumps(event_body())
    text = '{"events": [' + good + ", " + good + ', {"domain": "d", "event_type": "e", ' \
        '"metric_type": "latency_ms", "value": 1e400}]}'
    response = post_raw(outcomes_a, BULK, text)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["events.2.value"]
    assert stored_events() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "This field is required."),
        ({"events": None}, "Must be a list of events."),
        ({"events": {"0": {}}}, "Must be a list of events."),
        ({"events": []}, "At least one event is required."),
    ],
)
def test_bulk_needs_a_list_of_events(outcomes_a, body, message):
    response = outcomes_a.post(BULK, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"events": [message]}


@pytest.mark.django_db
def test_bulk_event_that_is_not_an_object_is_named_by_index(outcomes_a):
    response = outcomes_a.post(BULK, {"events": [event_body(), 7]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"events.1": ["Each event must be a JSON object."]}


@pytest.mark.django_db
def test_bulk_takes_ten_thousand_events_and_refuses_more(outcomes_a):
    event = event_body(occurred_at="2026-01-01T00:00:00Z")
    too_many = outcomes_a.post(BULK, {"events": [event] * 10_001}, format="json")
    assert too_many.status_code == 400
    assert too_many.json()["errors"] == {
        "events": ["At most 10000 events per request (got 10001)."]
    }
    assert stored_events() == 0
    response = outcomes_a.post(BULK, {"events": [event] * 10_000}, format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 10_000}
    assert stored_events() == 10_000
    assert OutcomeCount.all_tenants.get().count == 10_000


@pytest.mark.django_db
def test_bulk_events_sharing_a_timestamp_keep_their_order(outcomes_a):
    events = [
        event_body(value=float(i), occurred_at="2026-01-01T00:00:00Z") for i in range(30)
    ]
    assert outcomes_a.post(BULK, {"events": events}, format="json").status_code == 201
    trend = outcomes_a.get("/v1/outcomes/trends/success_rate?window=30").json()
    assert trend["values"] == [float(i) for i in range(30)]


# --- listing ----------------------------------------------------------------------------


def _ids(response) -> list[str]:
    return [row["id"] for row in response.json()]


def _next_link(response) -> str | None:
    link = response.headers.get("Link")
    if not link:
        return None
    url = link.split(";")[0].strip("<> ")
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}"


@pytest.mark.django_db
def test_list_is_newest_occurred_at_first(outcomes_a, tenant_a):
    created = [OutcomeEventFactory(tenant=tenant_a, occurred_at=at(m)) for m in (5, 1, 9, 3)]
    response = outcomes_a.get(EVENTS)
    assert response.status_code == 200
    by_time = sorted(created, key=lambda e: e.occurred_at, reverse=True)
    assert _ids(response) == [e.pk for e in by_time]
    assert "Link" not in response.headers


@pytest.mark.django_db
def test_list_filters(outcomes_a, tenant_a):
    make = OutcomeEventFactory
    e1 = make(tenant=tenant_a, domain="support", event_type="a", metric_type="success_rate",
              occurred_at=at(0))
    e2 = make(tenant=tenant_a, domain="support", event_type="b", metric_type="latency_ms",
              occurred_at=at(10))
    e3 = make(tenant=tenant_a, domain="coding", event_type="a", metric_type="latency_ms",
              occurred_at=at(20))

    def ids(query: str) -> set[str]:
        response = outcomes_a.get(f"{EVENTS}?{query}")
        assert response.status_code == 200, response.content
        return set(_ids(response))

    assert ids("domain=support") == {e1.pk, e2.pk}
    assert ids("event_type=a") == {e1.pk, e3.pk}
    assert ids("metric_type=latency_ms") == {e2.pk, e3.pk}
    assert ids("metric_type=latency_ms&domain=coding") == {e3.pk}
    # since is inclusive, until exclusive
    assert ids(f"since={at(10).isoformat().replace('+00:00', 'Z')}") == {e2.pk, e3.pk}
    assert ids(f"until={at(10).isoformat().replace('+00:00', 'Z')}") == {e1.pk}
    assert ids("since=2026-01-01T00:05:00Z&until=2026-01-01T00:15:00Z") == {e2.pk}
    assert ids("domain=nothing-here") == set()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("metric_type=revenue", "metric_type"),
        ("since=not-a-date", "since"),
        ("until=2026-99-01", "until"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),
        ("until=9999-12-31T23:59:59-10:00", "until"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),
        ("cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgImFcdTAwMDAiXQ", "cursor"),  # NUL id
        ("cursor=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgIngiXQ", "cursor"),  # year 0 in UTC
        ("cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ", "cursor"),  # naive time
        ("cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsIDVd", "cursor"),  # id not a string
        ("cursor=Ingi", "cursor"),
        ("cursor=WzEsIDIsIDNd", "cursor"),
        ("domain=" + "d" * 201, "domain"),
    ],
)
def test_list_bad_query_is_400(outcomes_a, query, field):
    response = outcomes_a.get(f"{EVENTS}?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_cursor_walks_every_event_exactly_once_with_shared_timestamps(
    outcomes_a, tenant_a, tenant_b
):
    same_time = [
        {**event_body(value=float(i)), "occurred_at": "2026-01-01T00:00:00Z"} for i in range(130)
    ]
    spread = [
        {**event_body(value=float(i)), "occurred_at": at(i - 3).isoformat()} for i in range(20)
    ]
    more_ties = [
        {**event_body(value=float(i)), "occurred_at": at(7).isoformat()} for i in range(25)
    ]
    for events in (same_time, spread, more_ties):
        assert outcomes_a.post(BULK, {"events": events}, format="json").status_code == 201
    OutcomeEventFactory(tenant=tenant_b)  # another tenant's row: never listed
    expected = list(
        OutcomeEvent.all_tenants.filter(tenant=tenant_a)
        .order_by("-occurred_at", "-id")
        .values_list("id", flat=True)
    )
    assert len(expected) == 175
    seen: list[str] = []
    url: str | None = f"{EVENTS}?limit=7&domain=support"
    pages = 0
    while url:
        response = outcomes_a.get(url)
        assert response.status_code == 200
        page = _ids(response)
        assert 0 < len(page) <= 7
        seen += page
        url = _next_link(response)
        pages += 1
    assert seen == expected
    assert pages == 25


@pytest.mark.django_db
def test_list_queries_do_not_grow_with_rows(outcomes_a, tenant_a, django_assert_max_num_queries):
    outcomes_a.get(EVENTS)  # the token's last-use stamp is written once
    events = [event_body(value=float(i), metadata={"i": i}) for i in range(120)]
    outcomes_a.post(BULK, {"events": events}, format="json")
    with django_assert_max_num_queries(2):
        response = outcomes_a.get(f"{EVENTS}?limit=100")
    assert len(response.json()) == 100


def test_a_value_whose_rollup_sum_would_overflow_is_a_400_naming_it(outcomes_a):
    """Found by fuzzing: two values near the largest double overflowed the rollups' sum
    (a 500 on PostgreSQL)."""
    event = {"domain": "d", "event_type": "e", "metric_type": "latency_ms", "value": 1.7e308}
    response = outcomes_a.post("/v1/outcomes/events/bulk", {"events": [event, event]},
                               format="json")
    assert response.status_code == 400
    assert "value" in json.dumps(response.json()["errors"])
