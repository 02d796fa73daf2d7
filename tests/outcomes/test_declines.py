"""Declining trends open improvement intakes (issue 8 item 2)."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connections

from operations.models import ImprovementIntake
from outcomes import declines
from outcomes.declines import urgency_for
from tests.conftest import make_client
from tests.outcomes.conftest import at, event_body

pytestmark = pytest.mark.django_db


def post_series(client, values, *, domain="support", metric="success_rate", start=0):
    for offset, value in enumerate(values):
        response = client.post(
            "/v1/outcomes/events",
            event_body(domain=domain, metric_type=metric, value=value,
                       occurred_at=at(start + offset).isoformat()),
            format="json",
        )
        assert response.status_code == 201, response.content


def intakes(tenant):
    return list(ImprovementIntake.all_tenants.filter(tenant=tenant).order_by("started_at"))


def move(intake, *statuses):
    from agent33.tenancy.context import tenant_scope
    from operations.services import intake_transition
    from tests.origins import operator

    with tenant_scope(intake.tenant):
        for status in statuses:
            intake = intake_transition(intake=intake, origin=operator(), status=status)
    return intake


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run on-commit work (the decline evaluation) as a committed request would."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            action()

    return run


def test_a_declining_domain_trend_opens_one_intake(outcomes_a, tenant_a, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5]))
    [intake] = intakes(tenant_a)
    assert intake.title == "success_rate declining in support"
    assert intake.source == "outcomes"
    assert intake.research_type == "internal"
    assert intake.urgency == "high"  # -44 %
    assert "previous average 0.9" in intake.summary
    assert "current average 0.5" in intake.summary
    assert "-44.4 %" in intake.summary
    # Still declining: no second intake while this one is open.
    on_commit(lambda: post_series(outcomes_a, [0.4, 0.3], start=10))
    assert len(intakes(tenant_a)) == 1


def test_closing_the_intake_lets_a_later_decline_open_a_new_one(outcomes_a, tenant_a, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.5, 0.5]))
    [first] = intakes(tenant_a)
    move(first, "triaged", "analyzing", "accepted")
    on_commit(lambda: post_series(outcomes_a, [0.2], start=10))
    opened = intakes(tenant_a)
    assert len(opened) == 2
    assert opened[0].status == "accepted" and opened[1].status == "submitted"


def test_deferred_intakes_still_block_a_second_one(outcomes_a, tenant_a, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.5, 0.5]))
    [intake] = intakes(tenant_a)
    move(intake, "triaged", "analyzing", "deferred")
    on_commit(lambda: post_series(outcomes_a, [0.1], start=10))
    assert len(intakes(tenant_a)) == 1


def test_fewer_than_four_values_open_nothing(outcomes_a, tenant_a, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.5, 0.1]))
    assert intakes(tenant_a) == []


def test_improving_and_stable_trends_open_nothing(outcomes_a, tenant_a, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.5, 0.5, 0.9, 0.9]))
    on_commit(lambda: post_series(outcomes_a, [0.5] * 6, domain="billing"))
    # Lower is better for latency: rising latency declines, falling latency improves.
    on_commit(lambda: post_series(outcomes_a, [300, 300, 100, 100], metric="latency_ms"))
    assert intakes(tenant_a) == []
    on_commit(lambda: post_series(outcomes_a, [100, 100, 300, 300], metric="latency_ms",
                                  domain="search"))
    [intake] = intakes(tenant_a)
    assert intake.title == "latency_ms declining in search"


def test_the_all_domains_aggregate_never_opens_an_intake(outcomes_a, tenant_a, on_commit):
    # Each domain is flat, but the mixed series (high domain first, low domain later) falls.
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.9], domain="high"))
    on_commit(lambda: post_series(outcomes_a, [0.1, 0.1, 0.1], domain="low", start=10))
    assert intakes(tenant_a) == []


@pytest.mark.parametrize(
    ("change_pct", "urgency"),
    [(-50, "high"), (-20.01, "high"), (-20, "medium"), (-10.5, "medium"), (-10, "low"),
     (-5.1, "low")],
)
def test_urgency_follows_the_size_of_the_drop(change_pct, urgency):
    assert urgency_for(change_pct) == urgency


def test_a_bulk_evaluates_each_touched_key_once(outcomes_a, tenant_a, on_commit, monkeypatch):
    calls: list[list[tuple[str, str]]] = []
    real = declines.trend_stats_many

    def counting(**kwargs):
        calls.append(list(kwargs["keys"]))
        return real(**kwargs)

    monkeypatch.setattr(declines, "trend_stats_many", counting)
    events = [
        event_body(domain=f"d{i % 3}", value=0.9 if n < 500 else 0.1,
                   occurred_at=at(n).isoformat())
        for n, i in enumerate(range(3000))
    ]
    on_commit(lambda: outcomes_a.post("/v1/outcomes/events/bulk", {"events": events},
                                      format="json"))
    assert calls == [[("success_rate", "d0"), ("success_rate", "d1"), ("success_rate", "d2")]]


def test_intakes_stay_in_their_tenant(outcomes_a, outcomes_b, tenant_a, tenant_b, on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.5, 0.5]))
    assert len(intakes(tenant_a)) == 1
    assert intakes(tenant_b) == []
    on_commit(lambda: post_series(outcomes_b, [0.9, 0.9, 0.5, 0.5]))
    assert len(intakes(tenant_b)) == 1


def test_the_dashboard_shows_the_intake_beside_the_declining_trend(outcomes_a, tenant_a,
                                                                     on_commit):
    on_commit(lambda: post_series(outcomes_a, [0.9, 0.9, 0.5, 0.5]))
    [intake] = intakes(tenant_a)
    for query in ("", "?domain=support"):
        trends = {t["metric_type"]: t for t in
                  outcomes_a.get(f"/v1/outcomes/dashboard{query}").json()["trends"]}
        assert trends["success_rate"]["direction"] == "declining"
        assert trends["success_rate"]["intakes"] == [
            {"id": intake.pk, "title": intake.title, "status": "submitted",
             "urgency": "high", "domain": "support"}
        ]
        assert trends["latency_ms"]["intakes"] == []
    other = outcomes_a.get("/v1/outcomes/dashboard?domain=billing").json()["trends"]
    assert all(t["intakes"] == [] for t in other)


@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_writers_open_exactly_one_intake(require_postgres, tenant_a,
                                                            api_client_for):
    token = api_client_for(tenant_a, scopes=["outcomes:write"]).plaintext
    post_series(make_client(token), [0.9, 0.9, 0.9, 0.9])
    barrier = threading.Barrier(16)
    failures: list[BaseException] = []

    def writer(n: int):
        try:
            client = make_client(token)
            barrier.wait(timeout=10)
            post_series(client, [0.2], start=100 + n)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(intakes(tenant_a)) == 1


@pytest.mark.django_db
def test_the_combined_trend_read_matches_one_read_per_key(tenant_a, tenant_b):
    from agent33.tenancy.context import tenant_scope
    from outcomes.selectors import trend_get, trend_stats_many
    from outcomes.services import event_record_bulk

    rng = random.Random(8)
    events = [
        event_body(domain=domain, metric_type=metric, value=rng.uniform(0, 1),
                   # many share a timestamp, so the id decides their order
                   occurred_at=at(n // 3).isoformat())
        for n in range(90)
        for domain, metric in (("d1", "success_rate"), ("d1", "latency_ms"), ("d2", "cost_usd"))
    ]
    event_record_bulk(tenant=tenant_a, events=events)
    event_record_bulk(tenant=tenant_b, events=[event_body(domain="d1", value=0.0)] * 30)
    keys = [("success_rate", "d1"), ("latency_ms", "d1"), ("cost_usd", "d2"),
            ("quality_score", "none-yet")]
    with tenant_scope(tenant_a):
        combined = trend_stats_many(tenant=tenant_a, keys=keys)
        for metric_type, domain in keys:
            single = trend_get(tenant=tenant_a, metric_type=metric_type, domain=domain)
            assert combined[(metric_type, domain)] == single.stats
    assert combined[("quality_score", "none-yet")].sample_size == 0


@pytest.fixture
def evaluator_gate(monkeypatch):
    """Hold the background evaluator until the test opens the gate (proves who waits)."""
    from outcomes import deferred

    gate = threading.Event()
    real = declines.declines_evaluate

    def held(**kwargs):
        if threading.current_thread().name == "declines-evaluator":
            assert gate.wait(30), "the test never opened the gate"
        return real(**kwargs)

    monkeypatch.setattr(declines, "declines_evaluate", held)
    yield gate
    gate.set()
    assert deferred.wait_until_idle(30)


def _bulk_of_distinct_domains(client, count, *, prefix="svc"):
    events = [event_body(domain=f"{prefix}-{n}", value=1.0) for n in range(count)]
    response = client.post("/v1/outcomes/events/bulk", {"events": events}, format="json")
    assert response.status_code == 201, response.content


def _snapshot_domains(tenant) -> set[str]:
    from outcomes.models import OutcomeTrendSnapshot

    return set(OutcomeTrendSnapshot.all_tenants.filter(tenant=tenant)
               .values_list("domain", flat=True))


@pytest.mark.django_db(transaction=True)
def test_every_key_of_a_bulk_of_thousands_of_domains_is_evaluated(outcomes_a, tenant_a,
                                                                  settings):
    """No key is skipped at any size: 3,000 distinct domains, one snapshot each, and a
    decline among them still opens its intake."""
    from outcomes import deferred

    post_series(outcomes_a, [1.0, 1.0, 1.0, 1.0], domain="svc-7")
    settings.AGENT33_DECLINES_INLINE_KEYS = 100
    events = [event_body(domain=f"svc-{n}", value=0.0 if n == 7 else 1.0,
                         occurred_at=at(10).isoformat()) for n in range(3000)]
    events += [event_body(domain="svc-7", value=0.0, occurred_at=at(11 + n).isoformat())
               for n in range(4)]
    response = outcomes_a.post("/v1/outcomes/events/bulk", {"events": events}, format="json")
    assert response.status_code == 201
    assert deferred.wait_until_idle(60)
    assert _snapshot_domains(tenant_a) == {f"svc-{n}" for n in range(3000)}
    [intake] = intakes(tenant_a)
    assert intake.decline_key == "success_rate:svc-7"


@pytest.mark.django_db(transaction=True)
def test_a_large_bulk_answers_before_its_keys_are_evaluated(outcomes_a, tenant_a, settings,
                                                           evaluator_gate):
    from outcomes import deferred

    settings.AGENT33_DECLINES_INLINE_KEYS = 10
    _bulk_of_distinct_domains(outcomes_a, 50)
    # The response came back while the evaluator was held: nothing is evaluated yet.
    assert _snapshot_domains(tenant_a) == set()
    evaluator_gate.set()
    assert deferred.wait_until_idle(30)
    assert _snapshot_domains(tenant_a) == {f"svc-{n}" for n in range(50)}

    # A handful of keys is still evaluated before the answer.
    _bulk_of_distinct_domains(outcomes_a, 3, prefix="few")
    assert {"few-0", "few-1", "few-2"} <= _snapshot_domains(tenant_a)


@pytest.mark.django_db(transaction=True)
def test_a_sender_outpacing_the_evaluator_evaluates_its_own_keys(outcomes_a, tenant_a,
                                                                 settings, evaluator_gate):
    from outcomes import deferred

    settings.AGENT33_DECLINES_INLINE_KEYS = 1
    # One evaluation held by the evaluator, four more queued: the queue is full.
    for batch in range(1 + deferred._MAX_WAITING):
        _bulk_of_distinct_domains(outcomes_a, 2, prefix=f"queued{batch}")
    assert _snapshot_domains(tenant_a) == set()
    _bulk_of_distinct_domains(outcomes_a, 2, prefix="inline")
    assert _snapshot_domains(tenant_a) == {"inline-0", "inline-1"}
    evaluator_gate.set()
    assert deferred.wait_until_idle(30)
    assert len(_snapshot_domains(tenant_a)) == 2 * (2 + deferred._MAX_WAITING)
