"""One control plane, end to end over real HTTP against a live server (issue 8)."""

from __future__ import annotations

import httpx
import pytest

from agent33.tenancy.services import token_issue


@pytest.mark.django_db(transaction=True)
def test_runtime_declines_intake_and_operator_cancel(live_server, tenant_a, tenant_b):
    def client(tenant, scopes):
        token = token_issue(tenant=tenant, scopes=scopes).plaintext
        return httpx.Client(base_url=live_server.url, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})

    runtime = client(tenant_a, ["workflows:write", "multimodal:write", "outcomes:write"])
    operator = client(tenant_a, ["workflows:read", "workflows:execute", "outcomes:read"])
    stranger = client(tenant_b, ["admin"])

    # The runtime records a trace with a step and a multimodal request it will not run yet.
    trace = runtime.post("/v1/operations/traces",
                         json={"task_id": "summarise-inbox", "agent_id": "agent-7"}).json()
    step = runtime.post(f"/v1/operations/traces/{trace['id']}/steps",
                        json={"step_id": "fetch", "actions": [{"tool": "imap"}]})
    assert step.status_code == 201
    request = runtime.post("/v1/multimodal/requests", json={
        "modality": "text_to_speech", "input_text": "Your inbox summary", "execute_now": False,
    }).json()
    assert request["state"] == "pending"

    # Success rates fall: the decline opens an intake, which the hub lists.
    for value in (1, 1, 1, 1, 0.4, 0.3, 0.2, 0.1):
        response = runtime.post("/v1/outcomes/events", json={
            "domain": "inbox", "event_type": "summary", "metric_type": "success_rate",
            "value": value,
        })
        assert response.status_code == 201
    hub = operator.get("/v1/operations/hub").json()
    by_type = {}
    for process in hub["processes"]:
        by_type.setdefault(process["type"], []).append(process)
    [intake] = by_type["improvement_intake"]
    assert intake["name"] == "success_rate declining in inbox"
    assert {p["id"] for p in by_type["trace"]} == {trace["id"]}
    assert {p["id"] for p in by_type["multimodal_request"]} == {request["id"]}
    dashboard = operator.get("/v1/outcomes/dashboard?domain=inbox").json()
    [success] = [t for t in dashboard["trends"] if t["metric_type"] == "success_rate"]
    assert success["direction"] == "declining"
    assert [i["id"] for i in success["intakes"]] == [intake["id"]]

    # The operator cancels the multimodal request through the hub.
    cancelled = operator.post(f"/v1/operations/processes/{request['id']}/control",
                              json={"action": "cancel", "reason": "superseded"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["control_history"][-1]["reason"] == "superseded"
    assert operator.get(f"/v1/operations/processes/{request['id']}").json()["status"] == (
        "cancelled")

    # Another tenant sees none of it.
    assert stranger.get("/v1/operations/hub").json()["processes"] == []
    for process_id in (trace["id"], request["id"], intake["id"]):
        assert stranger.get(f"/v1/operations/processes/{process_id}").status_code == 404
    assert stranger.get(f"/v1/multimodal/requests/{request['id']}").status_code == 404
    assert stranger.get("/v1/outcomes/events").json() == []
    assert stranger.post(f"/v1/operations/processes/{trace['id']}/control",
                         json={"action": "cancel"}).status_code == 404
