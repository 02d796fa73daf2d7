"""Admin for process records (read-only facts + control actions), the control history, and
the Operations Hub page. Every list is tenant-limited by the admin bases."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from agent33.admin_site import AdminPage
from agent33.api.viewsets import actor_of
from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    TenantScopedInline,
    apply_service_to_each,
)

from .controls import process_control
from .models import (
    AutonomyBudget,
    ControlAction,
    ImprovementIntake,
    Trace,
    TraceStep,
    WorkflowRun,
)
from .selectors import control_history
from .staff_views import CONTROL_PERMISSION, VIEW_PERMISSION, hub_page

admin.site.register_page(
    AdminPage(
        route="operations/hub/",
        view=hub_page,
        name="operations_hub",
        title="Operations Hub",
        app_label="operations",
        permission=VIEW_PERMISSION,
    )
)


class ControlReasonForm(ActionForm):
    reason = forms.CharField(
        required=False, max_length=2000, label="Reason",
        widget=forms.TextInput(attrs={"placeholder": "Reason (for controls)", "size": 30}),
    )


def _run_control(modeladmin, request, queryset, action: str) -> None:
    reason = request.POST.get("reason", "").strip() or f"{action} from the admin list"
    actor = actor_of(request)
    apply_service_to_each(
        modeladmin, request, queryset.values_list("pk", flat=True),
        lambda pk: process_control(process_id=pk, action=action, reason=reason, actor=actor),
        done_message=f"{action}: {{count}} process(es).",
    )


@admin.action(description="Pause selected processes", permissions=["control"])
def control_pause(modeladmin, request, queryset):
    _run_control(modeladmin, request, queryset, "pause")


@admin.action(description="Resume selected processes", permissions=["control"])
def control_resume(modeladmin, request, queryset):
    _run_control(modeladmin, request, queryset, "resume")


@admin.action(description="Cancel selected processes", permissions=["control"])
def control_cancel(modeladmin, request, queryset):
    _run_control(modeladmin, request, queryset, "cancel")


class ProcessAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Process records are written by the runtime; staff inspect them and control them."""

    action_form = ControlReasonForm
    date_hierarchy = "started_at"
    list_per_page = 50
    actions = ()

    def has_control_permission(self, request) -> bool:
        return request.user.has_perm(CONTROL_PERMISSION)

    def get_readonly_fields(self, request, obj=None):
        names = [f.name for f in self.model._meta.concrete_fields]
        return [*names, "control_history_table"]

    @admin.display(description="control history")
    def control_history_table(self, obj):
        history = control_history(tenant_id=obj.tenant_id, process_id=obj.pk)
        link = reverse("admin:operations_controlaction_changelist") + "?" + urlencode(
            {"process_id": obj.pk}
        )
        if not history:
            return format_html('No controls yet. <a href="{}">History list</a>', link)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
            (
                (h["created_at"], h["action"], h["state_before"], h["state_after"], h["actor"],
                 h["reason"])
                for h in history
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>Action</th><th>State</th><th>Actor</th>"
            '<th>Reason</th></tr></thead><tbody>{}</tbody></table><a href="{}">History list</a>',
            rows,
            link,
        )


class TraceStepInline(ReadOnlyAdminMixin, TenantScopedInline):
    model = TraceStep
    fields = ("step_id", "action_count", "completed_at", "actions")
    readonly_fields = fields
    can_delete = False


@admin.register(Trace)
class TraceAdmin(ProcessAdmin):
    list_display = ("id", "task_id", "agent_id", "status", "tenant", "started_at", "completed_at")
    list_filter = ("status", StaffTenantFilter)
    search_fields = ("id", "task_id", "agent_id", "session_id", "run_id", "failure_code")
    inlines = [TraceStepInline]
    actions = (control_cancel,)


@admin.register(AutonomyBudget)
class AutonomyBudgetAdmin(ProcessAdmin):
    list_display = ("id", "task_id", "agent_id", "status", "tenant", "approved_by", "expires_at",
                    "started_at")
    list_filter = ("status", StaffTenantFilter)
    search_fields = ("id", "task_id", "agent_id", "approved_by")
    actions = (control_pause, control_resume, control_cancel)


@admin.register(ImprovementIntake)
class ImprovementIntakeAdmin(ProcessAdmin):
    list_display = ("id", "title", "status", "research_type", "urgency", "tenant", "started_at")
    list_filter = ("status", "research_type", "urgency", StaffTenantFilter)
    search_fields = ("id", "title", "summary", "source", "decline_key")


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ProcessAdmin):
    list_display = ("id", "workflow_name", "status", "trigger_type", "tenant", "started_at",
                    "duration_ms")
    list_filter = ("status", "trigger_type", StaffTenantFilter)
    search_fields = ("id", "workflow_name", "job_id", "error")
    actions = (control_pause, control_resume, control_cancel)


@admin.register(ControlAction)
class ControlActionAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("created_at", "action", "process_type", "process_link", "state_before",
                    "state_after", "actor", "reason", "tenant")
    list_filter = ("action", "process_type", StaffTenantFilter)
    search_fields = ("process_id", "actor", "reason")
    date_hierarchy = "created_at"

    @admin.display(description="process", ordering="process_id")
    def process_link(self, obj):
        model = {
            "trace": "trace",
            "autonomy_budget": "autonomybudget",
            "improvement_intake": "improvementintake",
            "workflow": "workflowrun",
        }.get(obj.process_type)
        if model is None:
            return obj.process_id
        url = reverse(f"admin:operations_{model}_change", args=[obj.process_id])
        return format_html('<a href="{}">{}</a>', url, obj.process_id)
