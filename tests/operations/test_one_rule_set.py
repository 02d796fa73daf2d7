"""One rule set: for every process type, state and control, the hub control, the type's own
transition endpoint, the admin action and `allowed_actions` give the same answer.

Generated from the state machines, so a new state, move or control is covered the day it is
added. Runs in both passes of the suite (SQLite and PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agent33.tenancy.staff import ACCESS_TENANT_PERM
from operations import choices
from operations.models import AutonomyBudget, ControlAction, ImprovementIntake, Trace, WorkflowRun
from operations.services import budgets_expire
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class ProcessKind:
    name: str
    machine: choices.StateMachine
    model: type
    factory: Any
    own_path: str  # the type's own move: POST {own_path} {"status": target}
    admin_list: str


KINDS = [
    ProcessKind("trace", choices.TRACE_MACHINE, Trace, TraceFactory,
                "/v1/operations/traces/{id}/complete", "/admin/operations/trace/"),
    ProcessKind("budget", choices.BUDGET_MACHINE, AutonomyBudget, AutonomyBudgetFactory,
                "/v1/operations/budgets/{id}/transition", "/admin/operations/autonomybudget/"),
    ProcessKind("intake", choices.INTAKE_MACHINE, ImprovementIntake, ImprovementIntakeFactory,
                "/v1/operations/improvements/{id}/transition",
                "/admin/operations/improvementintake/"),
    ProcessKind("workflow", choices.WORKFLOW_MACHINE, WorkflowRun, WorkflowRunFactory,
                "/v1/operations/workflow-runs/{id}/transition", "/admin/operations/workflowrun/"),
]

# Budgets carry a rule beyond the table (past expires_at never active): every budget case
# runs with an expiry to come and one passed. Other types have none.
EXPIRIES = {"future": timedelta(days=1), "past": -timedelta(hours=1)}
NO_EXPIRY = {"none": None}


def _cases():
    for kind in KINDS:
        expiries = EXPIRIES if kind.model is AutonomyBudget else NO_EXPIRY
        for state in kind.machine.states:
            for action in choices.CONTROL_ACTIONS:
                for expiry in expiries:
                    yield pytest.param(kind, state, action, expiry,
                                       id=f"{kind.name}-{state}-{action}-{expiry}")


@pytest.fixture
def clients(api_client_for, tenant_a, client, django_user_model):
    # Staff granted tenant A and the control permission; no password (hashing one costs
    # more than the rest of a case, and force_login needs none).
    staff = django_user_model.objects.create_user("ops-staff", password=None, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="operations"))
    assign_perm(ACCESS_TENANT_PERM, staff, tenant_a)
    client.force_login(staff)
    return {
        "hub": api_client_for(tenant_a, scopes=["workflows:read", "workflows:execute"]),
        "own": api_client_for(tenant_a, scopes=["workflows:write"]),
        "admin": client,
    }


# One clock per test run, so the twin objects a case compares expire at the same instant.
NOW = timezone.now()


def _make(kind: ProcessKind, tenant, state: str, expiry: str):
    extra = {}
    if kind.model is AutonomyBudget:
        extra["expires_at"] = NOW + EXPIRIES[expiry]
    return kind.factory(tenant=tenant, status=state, **extra)


def _status(kind: ProcessKind, pk: str) -> str:
    return kind.model.all_tenants.get(pk=pk).status


@pytest.mark.parametrize(("kind", "state", "action", "expiry"), list(_cases()))
def test_hub_control_admin_action_and_own_transition_agree(
    clients, tenant_a, kind, state, action, expiry
):
    rule = kind.machine.controls.get(action)

    # The hub control, and what the hub offers for this process.
    hub_obj = _make(kind, tenant_a, state, expiry)
    offered = clients["hub"].get(f"/v1/operations/processes/{hub_obj.pk}").json()
    hub = clients["hub"].post(f"/v1/operations/processes/{hub_obj.pk}/control",
                              {"action": action, "reason": "rule-set test"}, format="json")
    hub_after = _status(kind, hub_obj.pk)

    # The same control from the admin list's action.
    admin_obj = _make(kind, tenant_a, state, expiry)
    clients["admin"].post(kind.admin_list, {
        "action": f"control_{action}", "_selected_action": [admin_obj.pk], "reason": "admin",
    })
    admin_after = _status(kind, admin_obj.pk)

    assert (action in offered["allowed_actions"]) == (hub.status_code == 200), hub.content
    assert admin_after == hub_after
    audited = ControlAction.all_tenants.filter(process_id=hub_obj.pk)
    if rule is None:
        assert hub.status_code == 409 and hub.json()["code"] == "unsupported_action"
        assert hub_after == state and not audited.exists()
        return

    # The type's own move to the control's target, from the same state.
    own_obj = _make(kind, tenant_a, state, expiry)
    own = clients["own"].post(kind.own_path.format(id=own_obj.pk), {"status": rule.target},
                              format="json")
    own_after = _status(kind, own_obj.pk)

    if hub.status_code == 200:
        # A control never succeeds where the type's own rules refuse the move.
        assert own.status_code == 200, own.content
        assert hub_after == own_after == rule.target
        assert hub.json()["status"] == rule.target
        [entry] = audited.values("action", "state_before", "state_after")
        assert entry == {"action": action, "state_before": state, "state_after": rule.target}
    else:
        assert hub.status_code == 409, hub.content
        assert hub_after == state and not audited.exists()
    if state in rule.sources:
        # Where the control applies, it is the type's own move: same answer, same reason.
        assert hub.status_code == own.status_code, (hub.content, own.content)
        assert hub.json().get("code") == own.json().get("code")
        assert hub_after == own_after
    else:
        # A control is a narrower, named move ("resume" undoes a pause only).
        assert hub.json()["code"] == "invalid_transition"
        assert f"'{state}'" in hub.json()["detail"]


@pytest.mark.parametrize("state", choices.BUDGET_MACHINE.states)
def test_the_expiry_sweep_moves_exactly_what_the_table_lets_expire(tenant_a, state):
    budget = _make(KINDS[1], tenant_a, state, "past")
    expired = budgets_expire()
    may_expire = choices.BUDGET_MACHINE.allows(state, choices.BudgetStatus.EXPIRED)
    assert (budget.pk in expired) == may_expire
    assert _status(KINDS[1], budget.pk) == ("expired" if may_expire else state)


def _staff_cases():
    for kind in KINDS:
        if kind.model not in (AutonomyBudget, ImprovementIntake):
            continue
        expiries = EXPIRIES if kind.model is AutonomyBudget else NO_EXPIRY
        for state in kind.machine.states:
            for target in kind.machine.states:
                for expiry in expiries:
                    yield pytest.param(kind, state, target, expiry,
                                       id=f"{kind.name}-{state}-{target}-{expiry}")


@pytest.mark.parametrize(("kind", "state", "target", "expiry"), list(_staff_cases()))
def test_staff_moves_and_own_transitions_agree(clients, tenant_a, kind, state, target, expiry):
    """A staff member's button on the process page is the type's own move: offered exactly
    when it succeeds, and succeeding or refused exactly as the API is."""
    page_obj = _make(kind, tenant_a, state, expiry)
    change_url = f"{kind.admin_list}{page_obj.pk}/change/"
    offered = clients["admin"].get(change_url).context["staff_moves"]
    response = clients["admin"].post(f"{kind.admin_list}{page_obj.pk}/move/",
                                     {"target": target, "note": "rule-set test"}, follow=True)
    staff_after = _status(kind, page_obj.pk)
    staff_messages = [str(m) for m in response.context["messages"]]

    own_obj = _make(kind, tenant_a, state, expiry)
    own = clients["own"].post(kind.own_path.format(id=own_obj.pk), {"status": target},
                              format="json")

    assert (target in dict(offered)) == (own.status_code == 200)
    assert staff_after == _status(kind, own_obj.pk)
    history = ControlAction.all_tenants.filter(process_id=page_obj.pk)
    if own.status_code == 200:
        assert staff_after == target
        [entry] = history.values("action", "state_before", "state_after", "reason", "actor")
        assert entry == {"action": "move", "state_before": state, "state_after": target,
                         "reason": "rule-set test", "actor": "staff:ops-staff"}
    else:
        assert staff_after == state and not history.exists()
        assert staff_messages == [own.json()["detail"].replace(own_obj.pk, page_obj.pk)]
