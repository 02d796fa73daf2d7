"""The staff hub page on the live stream, in a real browser (Playwright driving Debian's
chromium): a change arrives by the stream (the page marks how it is fed and what painted each
row), and with the stream refused the page polls, still shows the change, and goes back to
the stream once it can."""

from __future__ import annotations

import pytest

WITHIN_MS = 15_000


def _json_polls(page) -> list[str]:
    """The page's reads of the hub list (panels-only reads after a change are not)."""
    polls: list[str] = []
    page.on("request", lambda req: polls.append(req.url)
            if "format=json" in req.url and "panels=only" not in req.url else None)
    return polls


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_change_arrives_by_the_stream(staff_user_factory, staff_page, api_client_for,
                                        tenant_a, tenant_b):
    from playwright.sync_api import expect

    page = staff_page(staff_user_factory("stream-viewer", tenants=[tenant_a]))
    polls = _json_polls(page)
    page.goto(f"{page.live_url}/admin/operations/hub/")
    hub = page.locator("#operations-hub")
    expect(hub).to_have_attribute("data-live", "stream", timeout=WITHIN_MS)
    expect(page.locator("#hub-live")).to_have_text("live")
    expect(page.locator("#hub-active-count")).to_have_text("0", timeout=WITHIN_MS)
    page.wait_for_timeout(300)  # the read after subscribing has answered
    polled = len(polls)

    runtime = api_client_for(tenant_a, scopes=["workflows:write", "workflows:execute"])
    foreign = api_client_for(tenant_b, scopes=["workflows:write"]).post(
        "/v1/operations/workflow-runs", {"workflow_name": "foreign", "status": "running"},
        format="json").json()["id"]
    page.wait_for_timeout(300)  # the broker has read it (one change at a time, as below)
    run_id = runtime.post("/v1/operations/workflow-runs",
                          {"workflow_name": "streamed-run", "status": "running"},
                          format="json").json()["id"]
    row = page.locator(f'tr[data-process-id="{run_id}"]')
    expect(row).to_be_visible(timeout=WITHIN_MS)
    expect(row).to_have_attribute("data-via", "stream")
    expect(page.locator("#hub-active-count")).to_have_text("1")

    # A status change comes the same way; a finished run leaves the "not finished" view.
    assert runtime.post(f"/v1/operations/workflow-runs/{run_id}/transition",
                        {"status": "paused"}, format="json").status_code == 200
    expect(row.locator(".hub-status")).to_have_text("paused", timeout=WITHIN_MS)
    expect(row.locator("button[data-action=resume]")).to_be_visible()
    # One change at a time, each seen before the next (the live server's in-memory SQLite
    # is shared-cache: a write while the broker reads the same table fails at once).
    assert runtime.post(f"/v1/operations/workflow-runs/{run_id}/transition",
                        {"status": "running"}, format="json").status_code == 200
    expect(row.locator(".hub-status")).to_have_text("running", timeout=WITHIN_MS)
    assert runtime.post(f"/v1/operations/workflow-runs/{run_id}/transition",
                        {"status": "completed"}, format="json").status_code == 200
    expect(row).to_have_count(0, timeout=WITHIN_MS)
    expect(page.locator("#hub-active-count")).to_have_text("0")

    # None of it came by polling, and the other tenant's run never showed.
    assert len(polls) == polled, polls[polled:]
    expect(page.locator(f'tr[data-process-id="{foreign}"]')).to_have_count(0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_without_the_stream_the_page_polls_and_comes_back(staff_user_factory, staff_page,
                                                          api_client_for, tenant_a, settings):
    from playwright.sync_api import expect

    settings.AGENT33_HUB_STREAMS_THREADED = 0  # every stream refused: 503 stream_capacity
    page = staff_page(staff_user_factory("poll-viewer", tenants=[tenant_a]))
    page.goto(f"{page.live_url}/admin/operations/hub/")
    hub = page.locator("#operations-hub")
    expect(page.locator("#hub-active-count")).to_have_text("0", timeout=WITHIN_MS), \
        page.locator("#hub-message").text_content()
    expect(hub).to_have_attribute("data-live", "polling")
    expect(page.locator("#hub-live")).to_have_text("polling")

    runtime = api_client_for(tenant_a, scopes=["workflows:write"])
    run_id = runtime.post("/v1/operations/workflow-runs",
                          {"workflow_name": "polled-run", "status": "running"},
                          format="json").json()["id"]
    row = page.locator(f'tr[data-process-id="{run_id}"]')
    expect(row).to_be_visible(timeout=WITHIN_MS)
    expect(row).to_have_attribute("data-via", "poll")

    # The stream is back: the page tries again (every 10 s) and lives on it again.
    settings.AGENT33_HUB_STREAMS_THREADED = 8
    expect(hub).to_have_attribute("data-live", "stream", timeout=25_000)
    second = runtime.post("/v1/operations/workflow-runs",
                          {"workflow_name": "streamed-again", "status": "running"},
                          format="json").json()["id"]
    expect(page.locator(f'tr[data-process-id="{second}"]')).to_have_attribute(
        "data-via", "stream", timeout=WITHIN_MS)
