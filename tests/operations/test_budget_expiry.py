"""Autonomy budgets expire when `expires_at` passes: a sweep (Celery beat every 30 s,
`manage.py expire_budgets`) moves active and suspended ones to `expired`, and a budget past its
expiry cannot be activated."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from agent33.celery import app as celery_app
from operations.models import AutonomyBudget, StatusChange
from operations.services import budgets_expire
from tests.factories.operations import AutonomyBudgetFactory

pytestmark = pytest.mark.django_db


def status_of(budget) -> str:
    return AutonomyBudget.all_tenants.get(pk=budget.pk).status


def test_the_sweep_expires_only_live_budgets_past_their_expiry(tenant_a, tenant_b):
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(hours=1)
    due = [
        AutonomyBudgetFactory(tenant=tenant_a, status="active", expires_at=past),
        AutonomyBudgetFactory(tenant=tenant_b, status="suspended", expires_at=past),
        AutonomyBudgetFactory(tenant=tenant_a, status="active", expires_at=now),
    ]
    kept = {
        AutonomyBudgetFactory(tenant=tenant_a, status="active", expires_at=future): "active",
        AutonomyBudgetFactory(tenant=tenant_a, status="active", expires_at=None): "active",
        AutonomyBudgetFactory(tenant=tenant_b, status="draft", expires_at=past): "draft",
        AutonomyBudgetFactory(
            tenant=tenant_b, status="pending_approval", expires_at=past
        ): "pending_approval",
        AutonomyBudgetFactory(tenant=tenant_a, status="completed", expires_at=past): "completed",
    }

    expired = budgets_expire(now=now)

    assert sorted(expired) == sorted(budget.pk for budget in due)
    for budget in due:
        stored = AutonomyBudget.all_tenants.get(pk=budget.pk)
        assert stored.status == "expired" and stored.updated_at >= now
    for budget, status in kept.items():
        assert status_of(budget) == status
    # One history row per expired budget, in its own tenant, written by the sweep.
    history = StatusChange.all_tenants.order_by("process_id")
    assert [(h.process_id, h.tenant_id, h.state_before, h.state_after, h.action, h.cause,
             h.path, h.actor) for h in history] == sorted(
        (b.pk, b.tenant_id, b.status, "expired", "expire", "system", "sweep",
         "system:expiry-sweep") for b in due)
    assert budgets_expire(now=now) == []  # nothing expires twice
    assert StatusChange.all_tenants.count() == len(due)


def test_the_sweep_works_through_every_batch(tenant_a):
    past = timezone.now() - timedelta(seconds=5)
    budgets = AutonomyBudgetFactory.create_batch(5, tenant=tenant_a, status="active",
                                                 expires_at=past)
    assert len(budgets_expire(batch_size=2)) == 5
    assert {status_of(budget) for budget in budgets} == {"expired"}


def test_the_command_reports_what_it_expired(tenant_a):
    budget = AutonomyBudgetFactory(
        tenant=tenant_a, status="active", expires_at=timezone.now() - timedelta(seconds=1)
    )
    out = StringIO()
    call_command("expire_budgets", stdout=out)
    assert out.getvalue().splitlines() == [f"expired {budget.pk}", "Expired 1 budget(s)."]
    assert status_of(budget) == "expired"


def test_beat_runs_the_sweep_every_30_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["expire-autonomy-budgets"]
    assert entry == {"task": "operations.tasks.expire_budgets", "schedule": 30.0}
    celery_app.loader.import_default_modules()
    assert "operations.tasks.expire_budgets" in celery_app.tasks


def test_the_task_expires_due_budgets(tenant_a):
    from operations.tasks import expire_budgets

    budget = AutonomyBudgetFactory(
        tenant=tenant_a, status="suspended", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert expire_budgets.delay().get() == 1
    assert status_of(budget) == "expired"


def test_an_expired_budget_cannot_be_activated(api_client_for, tenant_a):
    writer = api_client_for(tenant_a, scopes=["workflows:write", "budgets:approve"])
    expires_at = timezone.now() - timedelta(minutes=5)
    budget = AutonomyBudgetFactory(tenant=tenant_a, status="draft", expires_at=expires_at)

    response = writer.post(
        f"/v1/operations/budgets/{budget.pk}/transition", {"status": "active"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "budget_expired"
    assert expires_at.isoformat() in response.json()["detail"]
    assert status_of(budget) == "draft"
    other = AutonomyBudgetFactory(
        tenant=tenant_a, status="draft", expires_at=timezone.now() + timedelta(hours=1)
    )
    response = writer.post(
        f"/v1/operations/budgets/{other.pk}/transition", {"status": "active"}, format="json"
    )
    assert response.status_code == 200 and status_of(other) == "active"
