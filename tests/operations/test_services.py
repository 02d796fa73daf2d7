"""Service-level rules: the decline intake's one-open rule, constraints, tenancy of writes."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from agent33.errors import InvalidInput, NotFound
from agent33.tenancy.context import tenant_scope
from operations import services
from operations.models import ImprovementIntake, WorkflowRun
from tests.factories.operations import ImprovementIntakeFactory, WorkflowRunFactory

pytestmark = pytest.mark.django_db


def open_decline(tenant, metric="success_rate", domain="billing"):
    return services.intake_open_for_decline(
        tenant=tenant, metric_type=metric, domain=domain,
        title=f"{metric} declining in {domain}", summary="trend turned",
    )


def test_one_open_intake_per_decline(tenant_a, tenant_b):
    with tenant_scope(tenant_a):
        first, created = open_decline(tenant_a)
        assert created and first.status == "submitted" and first.urgency == "high"
        again, created = open_decline(tenant_a)
        assert not created and again.pk == first.pk
        other_domain, created = open_decline(tenant_a, domain="search")
        assert created and other_domain.pk != first.pk

        services.intake_transition(intake=first, status="triaged")
        still_open, created = open_decline(tenant_a)  # triaged is still open
        assert not created and still_open.pk == first.pk

        ImprovementIntake.objects.filter(pk=first.pk).update(status="rejected")
        reopened, created = open_decline(tenant_a)
        assert created and reopened.pk != first.pk
    with tenant_scope(tenant_b):
        _, created = open_decline(tenant_b)
        assert created


def test_the_database_refuses_a_second_open_decline(tenant_a):
    ImprovementIntakeFactory(tenant=tenant_a, decline_key="m:d")
    ImprovementIntakeFactory(tenant=tenant_a, decline_key="m:d", status="tracked")  # closed: ok
    with pytest.raises(IntegrityError), transaction.atomic():
        ImprovementIntakeFactory(tenant=tenant_a, decline_key="m:d", status="deferred")


def test_the_database_refuses_unknown_statuses(tenant_a):
    run = WorkflowRunFactory(tenant=tenant_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkflowRun.all_tenants.filter(pk=run.pk).update(status="sleeping")


def test_services_fail_closed_without_scope_and_refuse_foreign_rows(tenant_a, tenant_b):
    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    with tenant_scope(tenant_b), pytest.raises(NotFound):
        services.process_control(process_id=run.pk, action="pause", actor="test")
    with tenant_scope(tenant_b), pytest.raises(NotFound):
        services.workflow_run_transition(run=run, status="paused")
    with tenant_scope(tenant_a), pytest.raises(InvalidInput):
        services.process_control(process_id=run.pk, action="halt", actor="test")
    with tenant_scope(tenant_a), pytest.raises(InvalidInput):
        services.workflow_run_create(tenant=tenant_a, workflow_name="w", status="paused")
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "running"


def test_process_control_records_in_the_same_transaction(tenant_a, monkeypatch):
    """If the control's statement fails after its UPDATE and audit INSERT (here: one more
    write the database refuses), the state change and the audit row are rolled back with
    it. On PostgreSQL the three are one statement; on SQLite, statements of one
    transaction."""
    from agent33 import sql
    from operations.models import ControlAction

    run = WorkflowRunFactory(tenant=tenant_a, status="running")
    real_execute_together = sql.execute_together

    def execute_then_fail(connection, writes, read=None):
        table = connection.ops.quote_name(ControlAction._meta.db_table)
        refused = (f"INSERT INTO {table} (tenant_id) VALUES (NULL)", [])  # NOT NULL
        return real_execute_together(connection, [*writes, refused], read)

    monkeypatch.setattr(services, "execute_together", execute_then_fail)
    with tenant_scope(tenant_a), pytest.raises(IntegrityError):
        services.process_control(process_id=run.pk, action="pause", actor="test")
    assert not ControlAction.all_tenants.filter(process_id=run.pk).exists()
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "running"
