"""One rule set, one record (DESIGN §7.1, §8.1): for every process type, every state and
every move, every path that can make the move gives the same answer, writes the same one
history row (state before → after, action, actor, cause, path, reason) and records no
outcome event.

Paths: the type's own endpoint (`/transition`, or `/complete` for traces), the hub's
`/control`, the admin list's control actions, the admin page's move buttons and the expiry
sweep. Generated from the state machines, so a new state, move or control is covered the
day it is added. Runs in both passes of the suite (SQLite and PostgreSQL). Multimodal
requests have theirs in tests/multimodal/test_control_agreement.py.
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
from operations.models import AutonomyBudget, ImprovementIntake, StatusChange, Trace, WorkflowRun
from operations.services import budgets_expire
from outcomes.models import OutcomeEvent
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    WorkflowRunFactory,
)

pytestmark = pytest.mark.django_db

REASON = "rule-set test"


@dataclass(frozen=True)
class Kind:
    name: str
    machine: choices.StateMachine
    model: type
    factory: Any
    own_path: str  # the type's own move: POST {own_path} {"status": target}
    admin_list: str
    staff_buttons: bool  # the admin page has one button per move


KINDS = [
    Kind("trace", choices.TRACE_MACHINE, Trace, TraceFactory,
         "/v1/operations/traces/{id}/complete", "/admin/operations/trace/", False),
    Kind("budget", choices.BUDGET_MACHINE, AutonomyBudget, AutonomyBudgetFactory,
         "/v1/operations/budgets/{id}/transition", "/admin/operations/autonomybudget/", True),
    Kind("intake", choices.INTAKE_MACHINE, ImprovementIntake, ImprovementIntakeFactory,
         "/v1/operations/improvements/{id}/transition", "/admin/operations/improvementintake/",
         True),
    Kind("workflow", choices.WORKFLOW_MACHINE, WorkflowRun, WorkflowRunFactory,
         "/v1/operations/workflow-runs/{id}/transition", "/admin/operations/workflowrun/",
         False),
]
BUDGET = KINDS[1]

# Budgets carry a rule beyond the table (past expires_at never active): every budget case
# runs with an expiry to come and one passed. Other types have none.
EXPIRIES = {"future": timedelta(days=1), "past": -timedelta(hours=1)}
NO_EXPIRY = {"none": None}
# One clock per test run, so the twin objects a case compares expire at the same instant.
NOW = timezone.now()


@pytest.fixture
def clients(api_client_for, tenant_a, client, django_user_model):
    # Staff granted tenant A with every operations permission (controls and approvals); no
    # password (hashing one costs more than the rest of a case, and force_login needs none).
    staff = django_user_model.objects.create_user("ops-staff", password=None, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="operations"))
    assign_perm(ACCESS_TENANT_PERM, staff, tenant_a)
    client.force_login(staff)
    token = api_client_for(tenant_a, scopes=["workflows:read", "workflows:write",
                                             "workflows:execute", "budgets:approve"],
                           name="console")
    return {"api": token, "admin": client}


def _make(kind: Kind, tenant, state: str, expiry: str):
    extra = {}
    if kind.model is AutonomyBudget:
        extra["expires_at"] = NOW + EXPIRIES[expiry]
    return kind.factory(tenant=tenant, status=state, **extra)


def _status(kind: Kind, pk: str) -> str:
    return kind.model.all_tenants.get(pk=pk).status


def _history(pk: str) -> list[dict[str, Any]]:
    return list(StatusChange.all_tenants.filter(process_id=pk).values(
        "action", "state_before", "state_after", "cause", "path", "actor", "actor_name",
        "reason"))


@dataclass(frozen=True)
class Answer:
    ok: bool
    code: str | None  # the refusal's code (API) or None
    detail: str  # the refusal's words, with the object's own id taken out
    state_after: str
    history: list[dict[str, Any]]


def _api_answer(response, kind: Kind, pk: str) -> Answer:
    body = response.json()
    ok = response.status_code == 200
    return Answer(ok=ok, code=None if ok else body["code"],
                  detail="" if ok else body["detail"].replace(pk, "<id>"),
                  state_after=_status(kind, pk), history=_history(pk))


def through_own_endpoint(clients, kind: Kind, pk: str, target: str) -> Answer:
    # A trace's /complete takes the why as its failure_message, kept as the history's reason.
    why = "failure_message" if kind.model is Trace else "reason"
    response = clients["api"].post(kind.own_path.format(id=pk),
                                   {"status": target, why: REASON}, format="json")
    assert response.status_code in (200, 409), response.content
    return _api_answer(response, kind, pk)


def through_hub_control(clients, kind: Kind, pk: str, action: str) -> Answer:
    response = clients["api"].post(f"/v1/operations/processes/{pk}/control",
                                   {"action": action, "reason": REASON}, format="json")
    assert response.status_code in (200, 409), response.content
    return _api_answer(response, kind, pk)


def _admin_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def through_admin_action(clients, kind: Kind, pk: str, action: str) -> Answer | None:
    """The admin list's bulk control on one row, or None when the list has no such action
    (a type without that control offers none)."""
    if action not in kind.machine.controls:
        return None
    before = _status(kind, pk)
    response = clients["admin"].post(kind.admin_list, {
        "action": f"control_{action}", "_selected_action": [pk], "reason": REASON,
    }, follow=True)
    errors = [m for m in _admin_messages(response) if pk in m]
    state_after = _status(kind, pk)
    return Answer(ok=state_after != before, code=None,
                  detail=" ".join(errors).replace(pk, "<id>"), state_after=state_after,
                  history=_history(pk))


def through_admin_button(clients, kind: Kind, pk: str, target: str) -> tuple[Answer, bool]:
    """(answer, whether the page offered the button)."""
    page = clients["admin"].get(f"{kind.admin_list}{pk}/change/")
    offered = target in dict(page.context["staff_moves"])
    response = clients["admin"].post(f"{kind.admin_list}{pk}/move/",
                                     {"target": target, "note": REASON}, follow=True)
    state_after = _status(kind, pk)
    ok = state_after == target and state_after != page.context["original"].status
    messages = _admin_messages(response)
    return Answer(ok=ok, code=None, detail="" if ok else messages[0].replace(pk, "<id>"),
                  state_after=state_after, history=_history(pk)), offered


def _expected_row(kind: Kind, state: str, target: str, *, path: str, actor: str,
                  actor_name: str, cause: str | None = None) -> dict[str, Any]:
    cause = cause or kind.machine.cause_of(state, target)
    if kind.machine.is_approval(state, target):
        action = "approve"
    elif kind.machine.control_for(state, target) and cause == "operator":
        action = kind.machine.control_for(state, target)
    else:
        action = "move"
    return {"action": action, "state_before": state, "state_after": target, "cause": cause,
            "path": path, "actor": actor, "actor_name": actor_name, "reason": REASON}


def _move_cases():
    for kind in KINDS:
        expiries = EXPIRIES if kind.model is AutonomyBudget else NO_EXPIRY
        targets = sorted(choices.TRACE_TERMINAL) if kind.model is Trace else kind.machine.states
        for state in kind.machine.states:
            for target in targets:
                for expiry in expiries:
                    yield pytest.param(kind, state, target, expiry,
                                       id=f"{kind.name}-{state}-{target}-{expiry}")


@pytest.mark.parametrize(("kind", "state", "target", "expiry"), list(_move_cases()))
def test_every_move_gives_the_same_answer_and_record_on_every_path(
    clients, tenant_a, kind, state, target, expiry
):
    token = clients["api"].token
    api_actor = f"token:{token.display_prefix}"
    may = (kind.machine.allows(state, target)
           and not (kind.model is AutonomyBudget and target == "active" and expiry == "past"))

    own_obj = _make(kind, tenant_a, state, expiry)
    own = through_own_endpoint(clients, kind, own_obj.pk, target)
    assert own.ok == may, (own, state, target)
    if may:
        assert own.state_after == target
        assert own.history == [_expected_row(kind, state, target, path="api", actor=api_actor,
                                             actor_name="console")]
    else:
        assert own.state_after == state and own.history == []
        assert own.code == ("budget_expired" if kind.machine.allows(state, target)
                            else "invalid_transition")

    if kind.staff_buttons:
        staff_obj = _make(kind, tenant_a, state, expiry)
        staff, offered = through_admin_button(clients, kind, staff_obj.pk, target)
        assert offered == staff.ok == may
        assert staff.state_after == own.state_after
        if may:
            assert staff.history == [_expected_row(kind, state, target, path="admin",
                                                   actor="user:ops-staff", actor_name="",
                                                   cause="operator")]
        else:
            assert staff.detail == own.detail and staff.history == []

    control = kind.machine.control_for(state, target)
    if control:
        # The same move made as a control, from the hub and from the admin list: the same
        # answer and the same record, but for the path.
        hub_obj, admin_obj = _make(kind, tenant_a, state, expiry), _make(kind, tenant_a,
                                                                         state, expiry)
        hub = through_hub_control(clients, kind, hub_obj.pk, control)
        admin = through_admin_action(clients, kind, admin_obj.pk, control)
        assert (hub.ok, hub.code, hub.detail, hub.state_after) == (
            own.ok, own.code, own.detail, own.state_after)
        assert (admin.ok, admin.state_after) == (own.ok, own.state_after)
        if may:
            assert hub.history == [_expected_row(kind, state, target, path="hub",
                                                 actor=api_actor, actor_name="console")]
            assert admin.history == [_expected_row(kind, state, target, path="admin",
                                                   actor="user:ops-staff", actor_name="")]
        else:
            assert hub.history == admin.history == []

    # A person's decision or a process's report on an operations record is never an outcome.
    assert not OutcomeEvent.all_tenants.exists()


def _control_cases():
    for kind in KINDS:
        expiries = EXPIRIES if kind.model is AutonomyBudget else NO_EXPIRY
        for state in kind.machine.states:
            for action in choices.CONTROL_ACTIONS:
                for expiry in expiries:
                    yield pytest.param(kind, state, action, expiry,
                                       id=f"{kind.name}-{state}-{action}-{expiry}")


@pytest.mark.parametrize(("kind", "state", "action", "expiry"), list(_control_cases()))
def test_every_control_agrees_with_what_the_hub_offers(
    clients, tenant_a, kind, state, action, expiry
):
    """Every control in every state: the hub's `allowed_actions` offers exactly the controls
    that succeed, the admin list action answers as the hub does, and a control outside its
    own sources (resume undoes a pause only) is refused in its own words."""
    rule = kind.machine.controls.get(action)
    hub_obj = _make(kind, tenant_a, state, expiry)
    offered = clients["api"].get(f"/v1/operations/processes/{hub_obj.pk}").json()
    hub = through_hub_control(clients, kind, hub_obj.pk, action)
    admin_obj = _make(kind, tenant_a, state, expiry)
    admin = through_admin_action(clients, kind, admin_obj.pk, action)

    assert (action in offered["allowed_actions"]) == hub.ok
    if rule is None:
        assert hub.code == "unsupported_action" and hub.state_after == state
        assert admin is None  # the admin list offers no such action
        return
    assert (admin.ok, admin.state_after) == (hub.ok, hub.state_after)
    if not hub.ok:
        assert hub.history == admin.history == []
        assert admin.detail == f"Skipped <id>: {hub.detail}"
        if state not in rule.sources:
            assert hub.code == "invalid_transition" and f"'{state}'" in hub.detail


@pytest.mark.parametrize("state", choices.BUDGET_MACHINE.states)
def test_the_expiry_sweep_moves_and_records_exactly_what_the_table_lets_expire(tenant_a,
                                                                             state):
    budget = _make(BUDGET, tenant_a, state, "past")
    expired = budgets_expire()
    may_expire = choices.BUDGET_MACHINE.allows(state, choices.BudgetStatus.EXPIRED)
    assert (budget.pk in expired) == may_expire
    assert _status(BUDGET, budget.pk) == ("expired" if may_expire else state)
    expected = [{"action": "expire", "state_before": state, "state_after": "expired",
                 "cause": "system", "path": "sweep", "actor": "system:expiry-sweep",
                 "actor_name": ""}] if may_expire else []
    assert [{k: v for k, v in row.items() if k != "reason"} for row in _history(budget.pk)] \
        == expected
    assert not OutcomeEvent.all_tenants.exists()
