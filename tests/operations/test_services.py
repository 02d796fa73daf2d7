"""Service-level rules: the decline intake's one-open rule, constraints, tenancy of writes."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.transaction import TransactionManagementError

from agent33.errors import InvalidInput, NotFound
from agent33.tenancy.context import TenantSet, tenant_scope
from operations import controls, services
from operations.models import AutonomyBudget, ImprovementIntake, WorkflowRun
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    WorkflowRunFactory,
)
from tests.origins import operator

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

        services.intake_transition(intake=first, origin=operator(), status="triaged")
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
        controls.process_control(process_id=run.pk, action="pause", origin=operator())
    with tenant_scope(tenant_b), pytest.raises(NotFound):
        services.workflow_run_transition(run=run, origin=operator(), status="paused")
    with tenant_scope(tenant_a), pytest.raises(InvalidInput):
        controls.process_control(process_id=run.pk, action="halt", origin=operator())
    with tenant_scope(tenant_a), pytest.raises(InvalidInput):
        services.workflow_run_create(tenant=tenant_a, workflow_name="w", status="paused")
    assert WorkflowRun.all_tenants.get(pk=run.pk).status == "running"


def test_the_transition_lock_reads_only_in_scope(tenant_a, tenant_b):
    budget = AutonomyBudgetFactory(tenant=tenant_a)
    with tenant_scope(tenant_a), transaction.atomic():
        assert services.lock_for_transition(AutonomyBudget, budget.pk).pk == budget.pk
    with tenant_scope(tenant_b), transaction.atomic(), pytest.raises(NotFound):
        services.lock_for_transition(AutonomyBudget, budget.pk)
    with tenant_scope(TenantSet({tenant_b.pk})), transaction.atomic(), pytest.raises(NotFound):
        services.lock_for_transition(AutonomyBudget, budget.pk)


@pytest.mark.django_db(transaction=True)
def test_the_transition_lock_needs_a_transaction(tenant_a):
    budget = AutonomyBudgetFactory(tenant=tenant_a)
    with tenant_scope(tenant_a), pytest.raises(TransactionManagementError):
        services.lock_for_transition(AutonomyBudget, budget.pk)
