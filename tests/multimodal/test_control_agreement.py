"""One rule set: cancelling a multimodal request through its own endpoint
(`POST /v1/multimodal/requests/{id}/cancel`) and through the Operations Hub
(`POST /v1/operations/processes/{id}/control`) gives the same answer in every state, and the
hub's `allowed_actions` offers exactly the controls that would change the request.

Every (state, action) pair runs on both databases (the suite's SQLite and PostgreSQL passes).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from multimodal.choices import REQUEST_MACHINE, RequestState
from multimodal.models import MultimodalRequest
from operations.choices import CONTROL_ACTIONS
from operations.models import StatusChange
from outcomes.models import OutcomeEvent
from tests.factories.multimodal import MultimodalRequestFactory

pytestmark = pytest.mark.django_db

FIRST_REASON = "set up cancelled"

# What a user gets for cancel in each state, whichever path they take:
# (status code, error code or None, the state afterwards).
CANCEL_ANSWERS = {
    RequestState.PENDING: (200, None, RequestState.CANCELLED),
    RequestState.PROCESSING: (200, None, RequestState.CANCELLED),
    RequestState.CANCELLED: (200, None, RequestState.CANCELLED),  # changes nothing
    RequestState.COMPLETED: (409, "invalid_transition", RequestState.COMPLETED),
    RequestState.FAILED: (409, "invalid_transition", RequestState.FAILED),
}


@pytest.fixture
def console(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=["workflows:read", "workflows:execute",
                                            "multimodal:read", "multimodal:write"])


def request_in(tenant, state: str) -> MultimodalRequest:
    fields: dict = {"state": state}
    if state == RequestState.PROCESSING:
        fields.update(claim_token="claim", claimed_at=timezone.now(),
                      deadline_at=timezone.now() + timedelta(minutes=5))
    if state == RequestState.CANCELLED:
        fields.update(cancelled_by="token:first", cancel_reason=FIRST_REASON)
    return MultimodalRequestFactory(tenant=tenant, **fields)


def through_the_api(client, mm_request: MultimodalRequest, action: str):
    return client.post(f"/v1/multimodal/requests/{mm_request.pk}/{action}",
                       {"reason": "agreement"}, format="json")


def through_the_hub(client, mm_request: MultimodalRequest, action: str):
    return client.post(f"/v1/operations/processes/{mm_request.pk}/control",
                       {"action": action, "reason": "agreement"}, format="json")


def answer(response, mm_request: MultimodalRequest) -> dict:
    """What the caller sees, with the request's own id taken out of the message so two
    requests in the same state can be compared."""
    body = response.json()
    mm_request.refresh_from_db()
    return {
        "status": response.status_code,
        "code": body.get("code") if response.status_code >= 400 else None,
        "detail": body.get("detail", "").replace(mm_request.pk, "<id>"),
        "state_shown": body.get("state", body.get("status")),
        "state_stored": mm_request.state,
        "cancel_reason": mm_request.cancel_reason,
    }


@pytest.mark.parametrize("state", RequestState.values)
def test_cancel_gives_the_same_answer_through_the_api_and_the_hub(console, tenant_a, state):
    by_api, by_hub = request_in(tenant_a, state), request_in(tenant_a, state)
    api = answer(through_the_api(console, by_api, "cancel"), by_api)
    hub = answer(through_the_hub(console, by_hub, "cancel"), by_hub)

    status, code, after = CANCEL_ANSWERS[state]
    assert (api["status"], api["code"], api["state_stored"]) == (status, code, after)
    assert api == hub
    if status == 200:
        assert api["state_shown"] == after
    if state == RequestState.CANCELLED:
        assert api["cancel_reason"] == FIRST_REASON  # the second cancel changed nothing
    elif status == 409:
        assert api["detail"] == (
            f"Request <id> is {state}; only pending or processing requests can be cancelled."
        )


@pytest.mark.parametrize("action", sorted(set(CONTROL_ACTIONS) - {"cancel"}))
@pytest.mark.parametrize("state", RequestState.values)
def test_pause_and_resume_are_refused_in_every_state(console, tenant_a, state, action):
    by_api, by_hub = request_in(tenant_a, state), request_in(tenant_a, state)
    hub = answer(through_the_hub(console, by_hub, action), by_hub)
    assert (hub["status"], hub["code"]) == (409, "unsupported_action")
    assert hub["detail"] == (
        f"A multimodal request does not support '{action}' (supported controls: cancel)."
    )
    # The multimodal API has no such action at all, and neither path changed anything.
    api = answer(through_the_api(console, by_api, action), by_api)
    assert api["status"] == 404
    assert api["state_stored"] == hub["state_stored"] == state


@pytest.mark.parametrize("state", RequestState.values)
def test_allowed_actions_offer_exactly_the_controls_that_change_the_request(
    console, tenant_a, state
):
    mm_request = request_in(tenant_a, state)
    detail = console.get(f"/v1/operations/processes/{mm_request.pk}").json()
    # Pause and resume never change a request; cancel does where its answer moves the state.
    changes = ["cancel"] if CANCEL_ANSWERS[state][2] != state else []
    assert detail["allowed_actions"] == changes
    assert detail["allowed_actions"] == list(REQUEST_MACHINE.allowed_actions(state))


# --- one record per change, on every path (DESIGN §8.1) ---------------------------------


def _history(mm_request: MultimodalRequest) -> list[dict]:
    return list(StatusChange.all_tenants.filter(process_id=mm_request.pk).values(
        "action", "state_before", "state_after", "cause", "path", "actor", "reason"))


@pytest.fixture
def staff(client, django_user_model, tenant_a):
    from django.contrib.auth.models import Permission
    from guardian.shortcuts import assign_perm

    from agent33.tenancy.staff import ACCESS_TENANT_PERM

    user = django_user_model.objects.create_user("mm-staff", password=None, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="multimodal", codename__in=["view_multimodalrequest",
                                                          "change_multimodalrequest"]))
    assign_perm(ACCESS_TENANT_PERM, user, tenant_a)
    client.force_login(user)
    return client


def through_the_admin(staff, mm_request: MultimodalRequest, action: str):
    staff.post("/admin/multimodal/multimodalrequest/", {
        "action": f"{action}_requests", "_selected_action": [mm_request.pk]})
    mm_request.refresh_from_db()
    return mm_request.state


@pytest.mark.parametrize("state", RequestState.values)
def test_cancel_writes_one_history_row_and_no_outcome_on_every_path(console, staff, tenant_a,
                                                                   state):
    actor = f"token:{console.token.display_prefix}"
    status, _, after = CANCEL_ANSWERS[state]
    for path, cancel in (
        ("api", lambda r: through_the_api(console, r, "cancel")),
        ("hub", lambda r: through_the_hub(console, r, "cancel")),
        ("admin", lambda r: through_the_admin(staff, r, "cancel")),
    ):
        mm_request = request_in(tenant_a, state)
        cancel(mm_request)
        mm_request.refresh_from_db()
        assert mm_request.state == after, path
        changed = status == 200 and state != RequestState.CANCELLED
        if changed:
            who = "user:mm-staff" if path == "admin" else actor
            reason = "cancelled in the admin" if path == "admin" else "agreement"
            assert _history(mm_request) == [{
                "action": "cancel", "state_before": state, "state_after": "cancelled",
                "cause": "operator", "path": path, "actor": who, "reason": reason}]
            assert mm_request.cancelled_by == who
        else:
            assert _history(mm_request) == []
    assert not OutcomeEvent.all_tenants.exists()


@pytest.mark.parametrize("state", RequestState.values)
def test_execute_gives_the_same_answer_and_record_from_the_api_and_the_admin(
    console, staff, tenant_a, state, django_capture_on_commit_callbacks
):
    by_api, by_admin = request_in(tenant_a, state), request_in(tenant_a, state)
    # The claim only: the queued job is not run here (captured, never executed).
    with django_capture_on_commit_callbacks(execute=False):
        api = console.post(f"/v1/multimodal/requests/{by_api.pk}/execute")
        through_the_admin(staff, by_admin, "execute")
    by_api.refresh_from_db()
    may = REQUEST_MACHINE.allows(state, RequestState.PROCESSING)
    assert (api.status_code == 200) == may
    assert by_api.state == by_admin.state == ("processing" if may else state)
    if may:
        for mm_request, path, actor in (
            (by_api, "api", f"token:{console.token.display_prefix}"),
            (by_admin, "admin", "user:mm-staff"),
        ):
            assert _history(mm_request) == [{
                "action": "execute", "state_before": state, "state_after": "processing",
                "cause": "operator", "path": path, "actor": actor, "reason": ""}]
    else:
        assert api.json()["code"] == "invalid_transition"
        assert _history(by_api) == _history(by_admin) == []


@pytest.mark.parametrize(("ending", "state_after", "success", "cause", "path", "actor"), [
    ("completed", "completed", 1.0, "process", "worker", "system:multimodal-worker"),
    ("failed", "failed", 0.0, "process", "worker", "system:multimodal-worker"),
    ("reaped", "failed", 0.0, "system", "sweep", "system:reaper"),
])
def test_a_requests_own_ending_is_recorded_and_is_an_outcome(
    tenant_a, ending, state_after, success, cause, path, actor
):
    """Only a request's own ending (the worker's answer, the reaper's timeout) is an
    outcome: success_rate 1 when completed, 0 when failed or timed out."""
    from agent33.tenancy.context import tenant_scope
    from multimodal.services.execution import REAPER, WORKER
    from multimodal.services.requests import request_end

    past = timezone.now() - timedelta(hours=1)
    mm_request = MultimodalRequestFactory(
        tenant=tenant_a, state="processing", claim_token="claim", claimed_at=past,
        deadline_at=past if ending == "reaped" else timezone.now() + timedelta(minutes=5))
    with tenant_scope(tenant_a):
        if ending == "reaped":
            from multimodal.services import reap_timeouts
            assert reap_timeouts() == [mm_request.pk]
        else:
            assert request_end(mm_request, state_after, origin=WORKER, claim_token="claim",
                               error_message="" if ending == "completed" else "boom")
    assert REAPER.actor == "system:reaper"
    [row] = _history(mm_request)
    assert (row["action"], row["state_before"], row["state_after"], row["cause"],
            row["path"], row["actor"]) == ("move", "processing", state_after, cause, path,
                                           actor)
    [event] = OutcomeEvent.all_tenants.filter(metric_type="success_rate")
    assert (event.value, event.metadata["state"]) == (success, state_after)
