"""The public service functions other apps call, the summary counts and the decline hook."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction

from agent33.tenancy.context import tenant_scope
from outcomes import demo, services
from outcomes.models import OutcomeCount, OutcomeEvent
from outcomes.selectors import summary_get

from .conftest import at, event_body


def counts(tenant) -> dict[tuple[str, str, str], int]:
    return {
        (c.metric_type, c.domain, c.event_type): c.count
        for c in OutcomeCount.all_tenants.filter(tenant=tenant)
    }


@pytest.mark.django_db
def test_event_record_from_python(tenant_a):
    event = services.event_record(
        tenant=tenant_a,
        domain="coding",
        event_type="pr_merged",
        metric_type="quality_score",
        value=Decimal("8.5"),
        occurred_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
        metadata={"pr": 12},
    )
    stored = OutcomeEvent.all_tenants.get(pk=event.pk)
    assert (stored.tenant_id, stored.value, stored.metadata) == ("tenant-a", 8.5, {"pr": 12})
    assert stored.occurred_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert counts(tenant_a) == {("quality_score", "coding", "pr_merged"): 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"value": float("nan")}, "value"),
        ({"value": float("inf")}, "value"),
        ({"value": 10**400}, "value"),
        ({"value": Decimal("NaN")}, "value"),
        ({"metric_type": "uptime"}, "metric_type"),
        ({"metadata": {"when": datetime(2026, 1, 1)}}, "metadata"),
        ({"metadata": {"x": float("-inf")}}, "metadata"),
        ({"domain": "\ud800"}, "domain"),
        ({"occurred_at": "later"}, "occurred_at"),
    ],
)
def test_event_record_rejects_bad_input_naming_the_field(tenant_a, kwargs, field):
    with pytest.raises(ValidationError) as raised:
        services.event_record(tenant=tenant_a, **{**event_body(), **kwargs})
    assert field in raised.value.message_dict
    assert OutcomeEvent.all_tenants.count() == 0


@pytest.mark.django_db
def test_event_record_bulk_from_python(tenant_a):
    created = services.event_record_bulk(
        tenant=tenant_a,
        events=[event_body(domain=f"d{i % 2}", occurred_at=at(i)) for i in range(6)],
    )
    assert created == 6
    assert counts(tenant_a) == {
        ("success_rate", "d0", "task_completed"): 3,
        ("success_rate", "d1", "task_completed"): 3,
    }


@pytest.mark.django_db
def test_counts_add_up_across_requests_whatever_the_increments(tenant_a, tenant_b):
    services.event_record_bulk(tenant=tenant_b, events=[event_body(domain="d0")] * 2)
    first = [event_body(domain=f"d{n}") for n in range(3) for _ in range(n + 1)]
    services.event_record_bulk(tenant=tenant_a, events=first)
    # Existing keys with different increments, and a new one.
    second = [event_body(domain=f"d{n}") for n in range(4) for _ in range(2 * n + 1)]
    services.event_record_bulk(tenant=tenant_a, events=second)
    services.event_record(tenant=tenant_a, **event_body(domain="d3"))
    assert counts(tenant_a) == {
        ("success_rate", "d0", "task_completed"): 1 + 1,
        ("success_rate", "d1", "task_completed"): 2 + 3,
        ("success_rate", "d2", "task_completed"): 3 + 5,
        ("success_rate", "d3", "task_completed"): 7 + 1,
    }
    assert counts(tenant_b) == {("success_rate", "d0", "task_completed"): 2}


@pytest.mark.django_db
def test_bulk_error_names_index_for_python_callers(tenant_a):
    with pytest.raises(ValidationError) as raised:
        services.event_record_bulk(tenant=tenant_a, events=[event_body(), event_body(value="x")])
    assert list(raised.value.message_dict) == ["events.1.value"]


# A real top-level transaction, as an API call has: the write joins a caller's transaction
# without a savepoint, so inside the test's own transaction it would doom that one instead.
@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_insert_stores_nothing(tenant_a, refused_outcome_counts):
    with pytest.raises(IntegrityError):
        services.event_record_bulk(tenant=tenant_a, events=[event_body()] * 50)
    assert OutcomeEvent.all_tenants.count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_event_and_its_count_stand_or_fall_together(tenant_a, refused_outcome_counts):
    with pytest.raises(IntegrityError):
        services.event_record(tenant=tenant_a, **event_body())
    assert OutcomeEvent.all_tenants.count() == 0


@pytest.mark.django_db
def test_event_record_stores_what_it_returns(tenant_a):
    event = services.event_record(
        tenant=tenant_a,
        **event_body(metadata={"run": ["é", 1]}, occurred_at="2026-11-20T10:00:00.123456Z"),
    )
    stored = OutcomeEvent.all_tenants.get()
    assert (stored.pk, stored.metadata, stored.occurred_at, stored.value) == (
        event.pk, {"run": ["é", 1]}, datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC), 0.5
    )
    assert OutcomeCount.all_tenants.get().count == 1


@pytest.mark.django_db
def test_after_commit_hook_gets_the_touched_trend_keys(
    tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    calls = []
    monkeypatch.setattr(
        services, "_after_events_committed", lambda tenant, keys: calls.append((tenant, keys))
    )
    events = [
        event_body(metric_type="latency_ms", domain="a"),
        event_body(metric_type="latency_ms", domain="a", event_type="other"),
        event_body(metric_type="cost_usd", domain="b"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.event_record_bulk(tenant=tenant_a, events=events)
    with django_capture_on_commit_callbacks(execute=True):
        services.event_record(tenant=tenant_a, **event_body(domain="c"))
    assert calls == [
        (tenant_a, frozenset({("latency_ms", "a"), ("cost_usd", "b")})),
        (tenant_a, frozenset({("success_rate", "c")})),
    ]


@pytest.mark.django_db
def test_hook_does_not_run_when_the_transaction_rolls_back(
    tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    calls = []
    monkeypatch.setattr(services, "_after_events_committed", lambda *a: calls.append(a))
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.event_record(tenant=tenant_a, **event_body())
        raise RuntimeError("the caller's transaction fails")
    assert calls == []
    assert OutcomeEvent.all_tenants.count() == 0


@pytest.mark.django_db
def test_counts_rebuild_matches_incremental_counts(tenant_a, tenant_b):
    for tenant in (tenant_a, tenant_b):
        services.event_record_bulk(
            tenant=tenant,
            events=[
                event_body(metric_type=m, domain=f"d{i % 3}", event_type=f"e{i % 2}")
                for i, m in enumerate(["success_rate", "latency_ms", "cost_usd"] * 7)
            ],
        )
    before = {t.slug: counts(t) for t in (tenant_a, tenant_b)}
    OutcomeCount.all_tenants.filter(tenant=tenant_a).update(count=999)
    call_command("outcomes_rebuild_counts", "--tenant", "tenant-a")
    assert counts(tenant_a) == before["tenant-a"]
    OutcomeCount.all_tenants.all().delete()
    call_command("outcomes_rebuild_counts")
    assert {t.slug: counts(t) for t in (tenant_a, tenant_b)} == before


@pytest.mark.django_db
def test_summary_with_a_date_range_counts_the_events_in_it(tenant_a):
    services.event_record_bulk(
        tenant=tenant_a,
        events=[event_body(domain=f"d{i}", occurred_at=at(i * 10)) for i in range(5)],
    )
    with tenant_scope(tenant_a):
        summary = summary_get(tenant=tenant_a, since=at(10), until=at(30))
    assert summary.total_events == 2
    assert summary.domains == ["d1", "d2"]


@pytest.mark.django_db
def test_metric_type_is_constrained_in_the_database(tenant_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        OutcomeEvent.all_tenants.create(
            tenant=tenant_a, domain="d", event_type="e", metric_type="bogus", value=1.0
        )


@pytest.mark.django_db
def test_demo_seed_is_idempotent(tenant_a):
    with tenant_scope(tenant_a):
        demo.seed_demo(tenant=tenant_a)
        first = OutcomeEvent.objects.count()
        demo.seed_demo(tenant=tenant_a)
        assert OutcomeEvent.objects.count() == first > 0
        assert sum(counts(tenant_a).values()) == first


def test_rebuild_command_rejects_an_unknown_tenant(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown tenant"):
        call_command("outcomes_rebuild_counts", "--tenant", "nope")


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_requests_add_up(require_postgres, tenant_a):
    """Two bulk writers touching the same count and rollup rows (in opposite orders) at once:
    both commit (their locks are taken in one key order, so neither deadlocks), and no
    increment of the summary counts or the rollups is lost."""
    import threading

    from django.db import connection as main_connection
    from django.db import connections

    keys = [(m, f"d{i}") for m in ("success_rate", "latency_ms") for i in range(20)]
    batches = [
        [event_body(metric_type=m, domain=d) for m, d in keys] * 5,
        [event_body(metric_type=m, domain=d) for m, d in reversed(keys)] * 5,
    ]
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def write(events):
        try:
            barrier.wait(timeout=10)
            for _ in range(3):
                services.event_record_bulk(tenant=tenant_a, events=events)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert main_connection.vendor == "postgresql"
    assert OutcomeEvent.all_tenants.count() == 2 * 3 * len(keys) * 5
    assert set(counts(tenant_a).values()) == {2 * 3 * 5}
    from outcomes.models import OutcomeRollup

    rollups = OutcomeRollup.all_tenants.filter(tenant=tenant_a)
    for span in (60, 3_600, 86_400):
        assert sum(rollups.filter(span=span, domain="").values_list("count", flat=True)) == (
            OutcomeEvent.all_tenants.count())
        per_domain = rollups.filter(span=span, domain="d7", event_type="")
        assert sum(per_domain.values_list("count", flat=True)) == 2 * 2 * 3 * 5
