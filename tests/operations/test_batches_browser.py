"""The hub page's batches in a real browser (Playwright driving Debian's chromium): filters
in the URL survive a reload, "Pause all N matching…" counts them, asks for a reason, and
shows the batch's progress until it is done; the rows then show paused."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agent33.jobs.worker import run_ready_jobs
from operations import batches
from operations.models import Batch, StatusChange, WorkflowRun
from tests.factories.operations import TraceFactory, WorkflowRunFactory

UPDATE_WITHIN_MS = 15_000


@pytest.fixture
def worker_thread(database_jobs):
    """Runs the queued jobs as the worker does, in a thread beside the live server."""
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                run_ready_jobs()
                stop.wait(0.2)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pause_all_matching_from_a_bookmarked_view(staff_user_factory, staff_page, tenant_a,
                                                   tenant_b, worker_thread, monkeypatch):
    from playwright.sync_api import expect

    monkeypatch.setattr(batches, "CHUNK_SIZE", 2)  # several chunks, so progress moves
    runs = [WorkflowRunFactory(tenant=tenant_a, workflow_name=f"nightly-{n}",
                               status="running").pk for n in range(6)]
    trace = TraceFactory(tenant=tenant_a, status="running").pk
    foreign = WorkflowRunFactory(tenant=tenant_b, status="running").pk
    user = staff_user_factory("batch-operator", tenants=[tenant_a])
    page = staff_page(user)
    page.goto(f"{page.live_url}/admin/operations/hub/")
    expect(page.locator(f'tr[data-process-id="{trace}"]')).to_be_visible(
        timeout=UPDATE_WITHIN_MS)

    # Choosing a filter writes it in the URL; a reload (or the bookmark) keeps it.
    page.select_option("#hub-type", "workflows")
    expect(page).to_have_url(f"{page.live_url}/admin/operations/hub/?include=workflows")
    page.reload()
    expect(page.locator("#hub-type")).to_have_value("workflows")
    expect(page.locator(f'tr[data-process-id="{trace}"]')).to_have_count(0,
                                                                        timeout=UPDATE_WITHIN_MS)
    page.goto(f"{page.live_url}/admin/operations/hub/?include=workflows&status=running")
    expect(page.locator("#hub-status")).to_have_value("running")
    page.goto(f"{page.live_url}/admin/operations/hub/?include=workflows")
    expect(page.locator("#hub-status")).to_have_value("")

    pause = page.locator("#batch-pause")
    expect(pause).to_have_text("Pause all 6 matching…", timeout=UPDATE_WITHIN_MS)
    expect(page.locator("#batch-resume")).to_have_text("Resume all 0 matching…")
    expect(page.locator("#batch-resume")).to_be_disabled()
    pause.click()
    expect(page.locator("#batch-dialog")).to_be_visible()
    expect(page.locator("#batch-question")).to_contain_text("Pause all 6 matching processes")
    page.fill("#batch-reason", "database maintenance")
    page.click("#batch-confirm")

    expect(page.locator("#batch-state")).to_have_text("completed", timeout=UPDATE_WITHIN_MS)
    expect(page.locator("#batch-done")).to_have_text("6")
    expect(page.locator("#batch-matched")).to_have_text("6")
    expect(page.locator("#hub-message")).to_contain_text("6 done, 0 skipped, 0 failed")
    for pk in runs:
        expect(page.locator(f'tr[data-process-id="{pk}"] .hub-status')).to_have_text(
            "paused", timeout=UPDATE_WITHIN_MS)
    expect(pause).to_have_text("Pause all 0 matching…", timeout=UPDATE_WITHIN_MS)
    expect(page.locator("#batch-resume")).to_have_text("Resume all 6 matching…")

    batch = Batch.all_tenants.get()
    assert (batch.tenant_id, batch.state, batch.done, batch.created_by) == (
        "tenant-a", "completed", 6, "user:batch-operator")
    history = StatusChange.all_tenants.filter(process_id__in=runs)
    assert {(h.path, h.reason, h.actor) for h in history} == {
        ("batch", "database maintenance", "user:batch-operator")}
    assert WorkflowRun.all_tenants.get(pk=foreign).status == "running"
