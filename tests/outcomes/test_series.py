"""GET /v1/outcomes/series: buckets from rollups, exact stats, 1 % percentiles, time zones."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outcomes import sketches
from outcomes.models import OutcomeEvent, OutcomeRollup
from outcomes.services import event_record_bulk

from .conftest import event_body

pytestmark = pytest.mark.django_db

URL = "/v1/outcomes/series"


def record(tenant, points, **fields) -> None:
    """points: (UTC datetime, value)."""
    event_record_bulk(tenant=tenant, events=[
        event_body(**{"metric_type": "latency_ms", **fields}, value=value,
                   occurred_at=moment.isoformat())
        for moment, value in points
    ])


def lower_quantile(values, q: float) -> float:
    """The element of rank floor(q (n - 1)), the one the sketch answers for."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def within_one_percent(answer: float, exact: float) -> bool:
    return abs(answer - exact) <= 0.01 * abs(exact) * (1 + 1e-9)


def get(client, **params):
    response = client.get(URL, {"metric_type": "latency_ms", **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_hour_buckets_have_exact_stats_and_percentiles_within_one_percent(outcomes_a, tenant_a):
    rng = random.Random(5)
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    first = [rng.lognormvariate(5, 1.2) for _ in range(500)]
    third = [rng.uniform(1, 3000) for _ in range(300)]
    record(tenant_a, [(start + timedelta(seconds=7 * i), v) for i, v in enumerate(first)])
    record(tenant_a, [(start + timedelta(hours=2, seconds=11 * i), v)
                      for i, v in enumerate(third)])

    body = get(outcomes_a, bucket="hour", **{"from": "2026-03-02T10:00:00Z",
                                              "to": "2026-03-02T13:00:00Z"})
    assert body["bucket"] == "hour" and body["tz"] == "UTC" and body["domain"] == "all"
    assert body["from"] == "2026-03-02T10:00:00+00:00"
    assert body["to"] == "2026-03-02T13:00:00+00:00"
    assert [b["start"] for b in body["buckets"]] == [
        "2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+00:00", "2026-03-02T12:00:00+00:00"]
    one, empty, three = body["buckets"]
    for bucket, values in ((one, first), (three, third)):
        assert bucket["count"] == len(values)
        assert bucket["avg"] == pytest.approx(math.fsum(values) / len(values), rel=1e-12)
        assert bucket["min"] == min(values) and bucket["max"] == max(values)
        assert within_one_percent(bucket["p50"], lower_quantile(values, 0.5))
        assert within_one_percent(bucket["p95"], lower_quantile(values, 0.95))
    assert empty == {"start": "2026-03-02T11:00:00+00:00", "count": 0, "avg": None,
                     "min": None, "max": None, "p50": None, "p95": None}
    every = first + third
    assert body["summary"]["count"] == 800
    assert within_one_percent(body["summary"]["p95"], lower_quantile(every, 0.95))


@pytest.mark.parametrize("distribution", ["lognormal", "negative_and_zero", "tiny", "spread"])
def test_sketch_quantiles_stay_within_one_percent_after_many_merges(distribution):
    rng = np.random.default_rng(3)
    values = {
        "lognormal": rng.lognormal(3, 2, 20_000),
        "negative_and_zero": np.concatenate([-rng.exponential(50, 5_000), np.zeros(500),
                                             rng.exponential(50, 5_000)]),
        "tiny": rng.uniform(1e-9, 1e-6, 5_000),
        "spread": 10.0 ** rng.uniform(-300, 300, 5_000),
    }[distribution]
    # Merged from 200 pieces, as a day of minutes is.
    pieces = []
    for part in np.array_split(values, 200):
        slots, counts = np.unique(sketches.slots_of(part), return_counts=True)
        pieces.append(sketches.encode_slots(slots, counts))
    merged = pieces[0]
    for piece in pieces[1:]:
        merged = sketches.merge(merged, piece)
    for q in (0.01, 0.5, 0.95, 0.99):
        [answer] = sketches.quantiles([merged], [q])
        exact = lower_quantile(values.tolist(), q)
        assert within_one_percent(answer, exact), (q, answer, exact)


def test_days_follow_local_midnight_across_dst_in_berlin(outcomes_a, tenant_a):
    # 2026-03-29: clocks go 02:00 -> 03:00 (a 23-hour day); 2026-10-25: 03:00 -> 02:00 (25).
    record(tenant_a, [
        (datetime(2026, 3, 28, 22, 59, tzinfo=UTC), 1.0),  # 23:59 CET, the 28th
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 2.0),   # 00:00 CET, the 29th
        (datetime(2026, 3, 29, 21, 59, tzinfo=UTC), 3.0),  # 23:59 CEST, the 29th
        (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 4.0),   # 00:00 CEST, the 30th
    ])
    body = get(outcomes_a, bucket="day", tz="Europe/Berlin",
               **{"from": "2026-03-28T00:00:00+01:00", "to": "2026-03-31T00:00:00+02:00"})
    starts = [b["start"] for b in body["buckets"]]
    assert starts == ["2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00",
                      "2026-03-30T00:00:00+02:00"]
    assert [(b["count"], b["min"], b["max"]) for b in body["buckets"]] == [
        (1, 1.0, 1.0), (2, 2.0, 3.0), (1, 4.0, 4.0)]

    record(tenant_a, [
        (datetime(2026, 10, 24, 21, 59, tzinfo=UTC), 5.0),  # 23:59 CEST, the 24th
        (datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 6.0),   # 00:00 CEST, the 25th
        (datetime(2026, 10, 25, 22, 59, tzinfo=UTC), 7.0),  # 23:59 CET, the 25th: 25 h in
        (datetime(2026, 10, 25, 23, 0, tzinfo=UTC), 8.0),   # 00:00 CET, the 26th
    ])
    body = get(outcomes_a, bucket="day", tz="Europe/Berlin",
               **{"from": "2026-10-24T12:00:00+02:00", "to": "2026-10-26T12:00:00+01:00"})
    assert [b["start"] for b in body["buckets"]] == [
        "2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"]
    assert [b["count"] for b in body["buckets"]] == [1, 2, 1]
    assert body["to"] == "2026-10-27T00:00:00+01:00"


@pytest.mark.parametrize(("tz", "offset", "midnight_utc"), [
    ("Asia/Kolkata", "+05:30", (18, 30)),
    ("Asia/Kathmandu", "+05:45", (18, 15)),
    ("America/St_Johns", "-03:30", (3, 30)),  # Newfoundland, in its winter offset
])
def test_days_and_hours_align_to_half_and_quarter_hour_offsets(
    outcomes_a, tenant_a, tz, offset, midnight_utc
):
    hour, minute = midnight_utc
    midnight = datetime(2026, 1, 15, hour, minute, tzinfo=UTC)
    record(tenant_a, [
        (midnight - timedelta(minutes=1), 10.0),  # the 14th (local), its last minute
        (midnight, 20.0),                         # the 15th, its first minute
        (midnight + timedelta(minutes=59), 30.0),
        (midnight + timedelta(minutes=60), 40.0),
    ])
    body = get(outcomes_a, bucket="day", tz=tz,
               **{"from": (midnight - timedelta(hours=1)).isoformat(),
                  "to": (midnight + timedelta(hours=1)).isoformat()})
    day = midnight.astimezone(ZoneInfo(tz)).date()
    assert [b["start"] for b in body["buckets"]] == [
        f"{day - timedelta(days=1)}T00:00:00{offset}", f"{day}T00:00:00{offset}"]
    assert [(b["count"], b["min"], b["max"]) for b in body["buckets"]] == [
        (1, 10.0, 10.0), (3, 20.0, 40.0)]
    hours = get(outcomes_a, bucket="hour", tz=tz,
                **{"from": midnight.isoformat(),
                   "to": (midnight + timedelta(hours=2)).isoformat()})
    assert [b["start"] for b in hours["buckets"]] == [
        f"{day}T00:00:00{offset}", f"{day}T01:00:00{offset}"]
    assert [b["count"] for b in hours["buckets"]] == [2, 1]


def test_weeks_start_on_local_monday_and_minutes_are_minutes(outcomes_a, tenant_a):
    record(tenant_a, [
        (datetime(2026, 6, 7, 21, 59, tzinfo=UTC), 1.0),  # Sunday 23:59 in Berlin (CEST)
        (datetime(2026, 6, 7, 22, 0, tzinfo=UTC), 2.0),   # Monday 00:00
        (datetime(2026, 6, 7, 22, 0, 59, tzinfo=UTC), 3.0),
    ])
    weeks = get(outcomes_a, bucket="week", tz="Europe/Berlin",
                **{"from": "2026-06-03T00:00:00Z", "to": "2026-06-09T00:00:00Z"})
    assert [(b["start"], b["count"]) for b in weeks["buckets"]] == [
        ("2026-06-01T00:00:00+02:00", 1), ("2026-06-08T00:00:00+02:00", 2)]
    minutes = get(outcomes_a, bucket="minute",
                  **{"from": "2026-06-07T21:59:00Z", "to": "2026-06-07T22:01:00Z"})
    assert [b["count"] for b in minutes["buckets"]] == [1, 2, ]


def test_domain_and_event_type_filters_read_their_own_rollups(outcomes_a, tenant_a):
    moment = datetime(2026, 2, 1, 12, tzinfo=UTC)
    record(tenant_a, [(moment, 100.0)], domain="api", event_type="fast")
    record(tenant_a, [(moment, 300.0)], domain="api", event_type="slow")
    record(tenant_a, [(moment, 900.0)], domain="web", event_type="slow")
    window = {"from": "2026-02-01T00:00:00Z", "to": "2026-02-02T00:00:00Z"}

    def stats(**params):
        [bucket] = get(outcomes_a, **window, **params)["buckets"]
        return bucket["count"], bucket["avg"]

    assert stats() == (3, pytest.approx(433.3333333333))
    assert stats(domain="api") == (2, 200.0)
    assert stats(domain="all") == (3, pytest.approx(433.3333333333))
    assert stats(domain="api", event_type="slow") == (1, 300.0)
    body = get(outcomes_a, domain="api", event_type="slow", **window)
    assert body["domain"] == "api" and body["event_type"] == "slow"


def test_compare_previous_adds_the_period_before(outcomes_a, tenant_a):
    record(tenant_a, [(datetime(2026, 5, 4, 9, tzinfo=UTC), 10.0),    # last week
                      (datetime(2026, 5, 11, 9, tzinfo=UTC), 30.0)])  # this week
    body = get(outcomes_a, bucket="week", compare="previous",
               **{"from": "2026-05-11T00:00:00Z", "to": "2026-05-18T00:00:00Z"})
    assert body["summary"]["avg"] == 30.0
    assert body["previous"]["from"] == "2026-05-04T00:00:00+00:00"
    assert body["previous"]["to"] == "2026-05-11T00:00:00+00:00"
    assert [b["count"] for b in body["previous"]["buckets"]] == [1]
    assert body["previous"]["summary"]["avg"] == 10.0
    assert "previous" not in get(outcomes_a, bucket="week")


def test_at_most_1000_buckets(outcomes_a):
    ok = outcomes_a.get(URL, {"metric_type": "latency_ms", "bucket": "minute",
                              "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T16:40:00Z"})
    assert ok.status_code == 200 and len(ok.json()["buckets"]) == 1000
    over = outcomes_a.get(URL, {"metric_type": "latency_ms", "bucket": "minute",
                                "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T16:40:01Z"})
    assert over.status_code == 400
    assert list(over.json()["errors"]) == ["bucket"]


@pytest.mark.parametrize(("params", "field"), [
    ({}, "metric_type"),
    ({"metric_type": "speed"}, "metric_type"),
    ({"bucket": "month"}, "bucket"),
    ({"tz": "Mars/Olympus"}, "tz"),
    ({"tz": "../../etc/passwd"}, "tz"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ({"event_type": "slow"}, "event_type"),
    ({"compare": "last_year"}, "compare"),
    ({"domain": "x" * 201}, "domain"),
    ({"domain": "a\x00b"}, "domain"),
    ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z",
      "tz": "America/New_York"}, "from"),
    ({"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:00Z", "bucket": "week"}, "from"),
    ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z",
      "compare": "previous"}, "from"),
])
def test_bad_parameters_are_a_400_naming_them(outcomes_a, params, field):
    query = {"metric_type": "latency_ms", **params} if "metric_type" not in params and params \
        else params
    response = outcomes_a.get(URL, query)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_a_series_reads_no_raw_events_and_answers_after_they_are_gone(outcomes_a, tenant_a):
    record(tenant_a, [(datetime(2026, 4, 1, 8, tzinfo=UTC) + timedelta(minutes=i), float(i))
                      for i in range(120)])
    params = {"bucket": "hour", "from": "2026-04-01T08:00:00Z", "to": "2026-04-01T10:00:00Z",
              "compare": "previous", "tz": "Asia/Kolkata"}
    with CaptureQueriesContext(connection) as queries:
        before = get(outcomes_a, **params)
    event_table = OutcomeEvent._meta.db_table
    assert not [q["sql"] for q in queries if event_table in q["sql"]]
    OutcomeEvent.all_tenants.filter(tenant=tenant_a).delete()
    assert get(outcomes_a, **params) == before
    assert before["summary"]["count"] == 120


def test_rollups_are_current_when_the_events_commit_and_merge_across_requests(
    outcomes_a, tenant_a
):
    moment = datetime(2026, 7, 1, 12, 0, 30, tzinfo=UTC)
    for value in (5.0, 1.0, 9.0):
        response = outcomes_a.post("/v1/outcomes/events", event_body(
            metric_type="latency_ms", value=value, occurred_at=moment.isoformat()),
            format="json")
        assert response.status_code == 201
    [minute] = get(outcomes_a, bucket="minute", **{"from": "2026-07-01T12:00:00Z",
                                                   "to": "2026-07-01T12:01:00Z"})["buckets"]
    assert (minute["count"], minute["min"], minute["max"], minute["avg"]) == (3, 1.0, 9.0, 5.0)
    assert minute["p50"] == pytest.approx(5.0, rel=0.01)
    # One row per key level and span, however many requests wrote it.
    assert OutcomeRollup.all_tenants.filter(tenant=tenant_a).count() == 9


def test_operator_tokens_name_the_tenant(operator_client, tenant_a):
    record(tenant_a, [(datetime(2026, 1, 5, tzinfo=UTC), 1.0)])
    query = {"metric_type": "latency_ms", "from": "2026-01-05T00:00:00Z",
             "to": "2026-01-06T00:00:00Z"}
    assert operator_client.get(URL, query).status_code == 400
    body = operator_client.get(URL, {**query, "tenant_id": tenant_a.slug}).json()
    assert body["summary"]["count"] == 1


def test_percentiles_stay_within_the_exact_min_and_max(outcomes_a, tenant_a):
    record(tenant_a, [(datetime(2026, 8, 1, 9, tzinfo=UTC), 1.0)] * 7, metric_type="success_rate")
    [bucket] = get(outcomes_a, metric_type="success_rate", bucket="hour",
                   **{"from": "2026-08-01T09:00:00Z", "to": "2026-08-01T10:00:00Z"})["buckets"]
    assert (bucket["p50"], bucket["p95"], bucket["avg"]) == (1.0, 1.0, 1.0)
