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
