"""agent33.sql and scope_condition_sql: the hand-written hot paths must read and write exactly
what the ORM would, and see exactly the rows the tenant-scoped manager would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from agent33.errors import NotFound
from agent33.sql import execute_together, insert_instance, select_instance, update_statement
from agent33.tenancy.context import (
    ALL_TENANTS,
    TenantScopeMissing,
    TenantSet,
    clear_scope,
    reset_scope,
    tenant_scope,
)
from agent33.tenancy.managers import scope_condition_sql
from operations.models import AutonomyBudget, WorkflowRun
from operations.services import lock_for_transition
from tests.factories.operations import AutonomyBudgetFactory, WorkflowRunFactory
from tests.factories.tenancy import TenantFactory

pytestmark = pytest.mark.django_db


def _ids_in_raw_scope() -> set[str]:
    quote = connection.ops.quote_name
    condition, params = scope_condition_sql(quote("tenant_id"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('id')} FROM {quote(WorkflowRun._meta.db_table)} WHERE {condition}",
            params,
        )
        return {row[0] for row in cursor.fetchall()}


def test_raw_scope_sees_what_the_manager_sees(tenant_a, tenant_b):
    third = TenantFactory()
    for tenant in (tenant_a, tenant_b, third):
        WorkflowRunFactory.create_batch(2, tenant=tenant)
    scopes = [
        tenant_a,
        tenant_b,
        TenantSet({tenant_a.pk, third.pk}),
        TenantSet(),
        ALL_TENANTS,
    ]
    for scope in scopes:
        with tenant_scope(scope):
            expected = set(WorkflowRun.objects.values_list("id", flat=True))
            assert _ids_in_raw_scope() == expected, scope
    assert len(expected) == 6  # the operator scope saw all three tenants


def test_raw_scope_fails_closed_without_a_scope():
    token = clear_scope()
    try:
        with pytest.raises(TenantScopeMissing):
            scope_condition_sql('"tenant_id"')
    finally:
        reset_scope(token)


def test_lock_reads_the_row_as_the_orm_does_and_only_in_scope(tenant_a, tenant_b):
    expires = datetime(2027, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    budget = AutonomyBudgetFactory(
        tenant=tenant_a, limits={"max_tool_calls": 3, "tools": ["é", None]}, expires_at=expires
    )
    with tenant_scope(tenant_a), transaction.atomic():
        locked = lock_for_transition(AutonomyBudget, budget.pk)
        stored = AutonomyBudget.objects.get(pk=budget.pk)
    for field in AutonomyBudget._meta.concrete_fields:
        assert getattr(locked, field.attname) == getattr(stored, field.attname), field.name
    assert locked.expires_at == expires and locked.limits["tools"] == ["é", None]
    assert not locked._state.adding
    with tenant_scope(tenant_b), transaction.atomic(), pytest.raises(NotFound):
        lock_for_transition(AutonomyBudget, budget.pk)
    with tenant_scope(TenantSet({tenant_b.pk})), transaction.atomic(), pytest.raises(NotFound):
        lock_for_transition(AutonomyBudget, budget.pk)


@pytest.mark.django_db(transaction=True)
def test_lock_needs_a_transaction(tenant_a):
    budget = AutonomyBudgetFactory(tenant=tenant_a)
    with tenant_scope(tenant_a), pytest.raises(TransactionManagementError):
        lock_for_transition(AutonomyBudget, budget.pk)


def test_insert_and_update_store_what_the_orm_reads_back(tenant_a):
    started = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    budget = AutonomyBudget(
        tenant=tenant_a, task_id="t", agent_id="a", limits={"k": [1, 2.5]}, started_at=started
    )
    insert_instance(budget, connection)
    assert not budget._state.adding
    stored = AutonomyBudget.all_tenants.get(pk=budget.pk)
    assert (stored.limits, stored.started_at, stored.status) == ({"k": [1, 2.5]}, started, "draft")

    with connection.cursor() as cursor:
        cursor.execute(*update_statement(
            AutonomyBudget, {"status": "active", "limits": {"k": None}}, connection,
            f"{connection.ops.quote_name('id')} = %s", [budget.pk],
        ))
        assert cursor.rowcount == 1
    stored.refresh_from_db()
    assert (stored.status, stored.limits) == ("active", {"k": None})


def test_execute_together_reads_the_database_as_it_was_before_the_writes(tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    quote = connection.ops.quote_name
    table = quote(WorkflowRun._meta.db_table)
    read = (f"SELECT {quote('status')} FROM {table} WHERE {quote('id')} = %s", [run.pk])
    write = update_statement(
        WorkflowRun, {"status": "paused"}, connection, f"{quote('id')} = %s", [run.pk]
    )
    with transaction.atomic():
        assert execute_together(connection, [write], read) == [("running",)]
    run.refresh_from_db()
    assert run.status == "paused"


def test_select_instance_with_annotations(tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a)
    quote = connection.ops.quote_name
    found = select_instance(
        WorkflowRun, connection, f"{quote('id')} = %s", [run.pk],
        annotations={"doubled": "2 * 21"},
    )
    assert found.pk == run.pk and found.doubled == 42
    assert select_instance(WorkflowRun, connection, f"{quote('id')} = %s", ["nope"]) is None


def test_execute_together_with_only_a_read(tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    quote = connection.ops.quote_name
    read = (
        f"SELECT {quote('status')} FROM {quote(WorkflowRun._meta.db_table)} "
        f"WHERE {quote('id')} = %s",
        [run.pk],
    )
    assert execute_together(connection, [], read) == [("running",)]
    assert execute_together(connection, []) == []
