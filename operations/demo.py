"""Demo records for `manage.py seed_demo` (runs inside tenant_scope(tenant); idempotent)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from agent33.auth.scopes import BUDGETS_APPROVE, WORKFLOWS_EXECUTE, WORKFLOWS_WRITE
from agent33.tenancy.models import Tenant

from . import controls, services
from .choices import ChangeCause, ChangePath
from .models import ImprovementIntake
from .transitions import Origin

DEMO_SOURCE = "demo"

# Who the demo's changes come from, as they would in production: the agent runtime's token
# reporting progress, a finance lead's token approving, a staff member on the hub page.
RUNTIME = Origin(actor="token:demo-runtime", actor_name="agent runtime (demo)",
                 path=ChangePath.API, scopes=frozenset({WORKFLOWS_WRITE}))
APPROVER = Origin(actor="token:demo-finance", actor_name="finance lead (demo)",
                  path=ChangePath.API, scopes=frozenset({BUDGETS_APPROVE}))
TRIAGER = Origin(actor="user:demo-admin", path=ChangePath.ADMIN, cause=ChangeCause.OPERATOR,
                 scopes=frozenset({WORKFLOWS_EXECUTE}))


def seed_demo(*, tenant: Tenant) -> None:
    # The demo's own marker: a demo intake. Present → this tenant is already seeded.
    if ImprovementIntake.objects.filter(tenant=tenant, source=DEMO_SOURCE).exists():
        return
    now = timezone.now()

    trace = services.trace_create(
        tenant=tenant, task_id="demo-summarise-inbox", agent_id="agent-researcher",
        session_id="session-1", run_id="run-1",
    )
    services.trace_add_step(
        trace=trace, step_id="fetch",
        actions=[{"tool": "mail.list", "status": "success"}, {"tool": "mail.read"}],
    )
    services.trace_add_step(trace=trace, step_id="summarise", actions=[{"tool": "llm.complete"}])
    done = services.trace_create(tenant=tenant, task_id="demo-triage-tickets",
                                 agent_id="agent-support")
    services.trace_add_step(trace=done, step_id="classify", actions=[{"tool": "llm.classify"}])
    services.trace_complete(trace=done, origin=RUNTIME, status="completed")
    failed = services.trace_create(tenant=tenant, task_id="demo-book-travel",
                                   agent_id="agent-assistant")
    services.trace_add_step(trace=failed, step_id="search", actions=[{"tool": "flights.search"}])
    services.trace_complete(trace=failed, origin=RUNTIME, status="failed", failure_code="F-TOOL",
                            failure_message="flights.search returned HTTP 502 three times")
    escalated = services.trace_create(tenant=tenant, task_id="demo-refund-request",
                                      agent_id="agent-support")
    services.trace_complete(trace=escalated, origin=RUNTIME, status="escalated",
                            failure_message="Refund above the agent's limit; handed to a human")

    budget = services.budget_create(
        tenant=tenant, task_id="demo-summarise-inbox", agent_id="agent-researcher",
        limits={"max_tool_calls": 50, "max_cost_usd": 2.5}, expires_at=now + timedelta(days=7),
    )
    services.budget_transition(budget=budget, origin=RUNTIME, status="pending_approval")
    services.budget_transition(budget=budget, origin=APPROVER, status="active",
                               reason="Within the research team's monthly allowance")
    pending = services.budget_create(tenant=tenant, task_id="demo-refactor-repo",
                                     agent_id="agent-coder", limits={"max_files_changed": 20})
    services.budget_transition(budget=pending, origin=RUNTIME, status="pending_approval")

    intake = services.intake_create(
        tenant=tenant, title="Cache provider responses", summary="Repeated prompts cost money.",
        source=DEMO_SOURCE, research_type="technical", urgency="medium",
    )
    services.intake_transition(intake=intake, origin=TRIAGER, status="triaged")

    for index, (name, status) in enumerate(
        [("nightly-report", "running"), ("ingest-docs", "queued"), ("weekly-digest", "running")]
    ):
        services.workflow_run_create(
            tenant=tenant, workflow_name=name, trigger_type="schedule" if index else "manual",
            status=status, started_at=now - timedelta(minutes=5 * (index + 1)),
            job_id=f"job-{index + 1}",
        )
    finished = services.workflow_run_create(tenant=tenant, workflow_name="backfill",
                                            status="running")
    services.workflow_run_transition(run=finished, origin=RUNTIME, status="completed")
    # An operator paused one run through the hub: it shows with its control history.
    paused = services.workflow_run_create(tenant=tenant, workflow_name="crawl-partner-sites",
                                          status="running", started_at=now - timedelta(hours=1))
    controls.process_control(process_id=paused.pk, action="pause",
                             origin=TRIAGER.via(ChangePath.HUB),
                             reason="Partner asked us to slow down until Monday")


__all__ = ["seed_demo"]
