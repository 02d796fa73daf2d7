"""Admin for process records (read-only facts + controls and staff moves), their history, and
the Operations Hub page. Every list is tenant-limited by the admin bases.

Staff act where they look: an intake's or a budget's page has one button per status its table
lets it move to now (with an optional note), and the lists have the same moves as bulk
actions, all through `controls.process_move` (the one transition service, audited)."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from agent33.admin_site import AdminPage
from agent33.errors import DomainError
from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    TenantScopedInline,
    apply_service_to_each,
)

from .choices import BudgetStatus, ChangeCause, ChangePath, IntakeStatus
from .controls import process_control, process_move
from .models import (
    AutonomyBudget,
    Batch,
    ImprovementIntake,
    StatusChange,
    Trace,
    TraceStep,
    WorkflowRun,
)
from .selectors import process_history
from .services import machine_for
from .staff_batches import batches_endpoint
from .staff_views import VIEW_PERMISSION, hub_page, hub_stream
from .transitions import CONTROL_PERMISSION, kind_for_type, move_refusal, origin_of

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
admin.site.register_page(
    AdminPage(
        route="operations/hub/stream/",
        view=hub_stream,
        name="operations_hub_stream",
        title="Operations Hub stream",
        app_label="operations",
        permission=VIEW_PERMISSION,
        in_index=False,
    )
)

admin.site.register_page(
    AdminPage(
        route="operations/hub/batches/",
        view=batches_endpoint,
        name="operations_hub_batches",
        title="Operations Hub batches",
        app_label="operations",
        permission=VIEW_PERMISSION,
        in_index=False,
    )
)


# Panels other apps add to an improvement intake's page (outcomes: the evidence of the
# decline that opened it). Operations imports none of them: they register here.
INTAKE_PANELS: list[Callable[[ImprovementIntake], str | None]] = []


def register_intake_panel(render: Callable[[ImprovementIntake], str | None]) -> None:
    """`render(intake)` → safe HTML shown on the intake's page, or None."""
    if render not in INTAKE_PANELS:
        INTAKE_PANELS.append(render)


class ControlReasonForm(ActionForm):
    reason = forms.CharField(
        required=False, max_length=2000, label="Reason",
        widget=forms.TextInput(attrs={"placeholder": "Reason or note", "size": 30}),
    )


def _staff_origin(request):
    return origin_of(request, path=ChangePath.ADMIN, cause=ChangeCause.OPERATOR)


def _run_control(modeladmin, request, queryset, action: str) -> None:
    reason = request.POST.get("reason", "").strip() or f"{action} from the admin list"
    origin = _staff_origin(request)
    apply_service_to_each(
        modeladmin, request, queryset.values_list("pk", flat=True),
        lambda pk: process_control(process_id=pk, action=action, reason=reason,
                                   origin=origin),
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


# What each staff move's button says, by the status it moves to (which moves exist comes
# from the type's transition table; these are only their words).
MOVE_LABELS: dict[str, str] = {
    IntakeStatus.TRIAGED: "Triage",
    IntakeStatus.ANALYZING: "Start analysis",
    IntakeStatus.ACCEPTED: "Accept",
    IntakeStatus.DEFERRED: "Defer",
    IntakeStatus.REJECTED: "Reject",
    IntakeStatus.TRACKED: "Track",
    BudgetStatus.PENDING_APPROVAL: "Submit for approval",
    BudgetStatus.ACTIVE: "Activate",
    BudgetStatus.SUSPENDED: "Suspend",
    BudgetStatus.COMPLETED: "Complete",
    BudgetStatus.EXPIRED: "Expire",
}


def move_label(current: str, target: str) -> str:
    if target == BudgetStatus.ACTIVE and current == BudgetStatus.PENDING_APPROVAL:
        return "Approve"
    if target == BudgetStatus.ACTIVE and current == BudgetStatus.SUSPENDED:
        return "Resume"
    return MOVE_LABELS.get(target, target)


def _move_action(target: str, description: str, *, only_from=None, move: str = ""):
    """A bulk action moving every selected process to `target` through the same service as
    the page's buttons; refusals are reported one line per row."""

    def action(modeladmin, request, queryset):
        note = request.POST.get("reason", "").strip()
        origin = _staff_origin(request)
        apply_service_to_each(
            modeladmin, request, queryset.values_list("pk", flat=True),
            lambda pk: process_move(modeladmin.model, pk, target=target, origin=origin,
                                    note=note, only_from=only_from, move=move),
            done_message=f"{description}: {{count}} process(es).",
        )

    action.__name__ = f"move_{move or target}"
    return admin.action(description=f"{description} selected", permissions=["control"])(action)


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
        return [*names, "history_table"]

    @admin.display(description="history")
    def history_table(self, obj):
        return render_history(obj.tenant_id, obj.pk)


def render_history(tenant_id: str, process_id: str):
    """A process's status changes, newest first, with a link to its full history list: the
    process pages of every type (multimodal requests' too) show it."""
    history = process_history(tenant_id=tenant_id, process_id=process_id)
    link = reverse("admin:operations_statuschange_changelist") + "?" + urlencode(
        {"process_id": process_id}
    )
    if not history:
        return format_html('No status changes yet. <a href="{}">History list</a>', link)
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (h["created_at"], h["action"], h["state_before"], h["state_after"],
             f"{h['actor']} ({h['actor_name']})" if h["actor_name"] else h["actor"],
             f"{h['cause']} / {h['path']}", h["reason"])
            for h in history
        ),
    )
    return format_html(
        '<table class="process-history"><thead><tr><th>When</th><th>Action</th>'
        "<th>State</th><th>Actor</th><th>Cause / path</th><th>Reason or note</th></tr>"
        '</thead><tbody>{}</tbody></table><a href="{}">History list</a>',
        rows,
        link,
    )


class StaffMovesAdmin(ProcessAdmin):
    """A process page with one button per status the process may move to now, and a note.
    The buttons POST to <id>/move/ (CSRF-protected by the admin), which calls
    `process_move`; a refusal shows its reason (the API's 409 detail) as an error message."""

    change_form_template = "admin/operations/process_change_form.html"

    def get_urls(self):
        return [
            path("<path:object_id>/move/", self.admin_site.admin_view(self.move_view),
                 name=f"{self._url_prefix()}_move"),
            *super().get_urls(),
        ]

    def staff_moves(self, request, obj) -> list[tuple[str, str]]:
        """(target status, button label) for each move this staff member may make now: the
        status change's own refusal, asked of the page's object (an approval needs the
        approve permission too)."""
        machine = machine_for(self.model)
        origin = _staff_origin(request)
        now = timezone.now()
        return [
            (target, move_label(obj.status, target))
            for target in machine.states
            if move_refusal(self.model, vars(obj), target, origin=origin, now=now) is None
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        # Here the page's object is at hand (change_view would have to load it again).
        can_move = obj is not None and self.has_control_permission(request)
        context["staff_moves"] = self.staff_moves(request, obj) if can_move else []
        if obj is not None:
            context["move_url"] = reverse(f"admin:{self._url_prefix()}_move",
                                          args=[quote(obj.pk)])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def move_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:  # absent, or a tenant this staff member is not granted
            raise Http404
        if not self.has_control_permission(request):
            raise PermissionDenied
        target = request.POST.get("target", "")
        try:
            moved = process_move(self.model, obj.pk, target=target,
                                 origin=_staff_origin(request),
                                 note=request.POST.get("note", ""))
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        else:
            self.message_user(
                request,
                f"{move_label(moved.state_before, target)}: {moved.state_before} → "
                f"{moved.obj.status}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse(f"admin:{self._url_prefix()}_change",
                                            args=[obj.pk]))

    def _url_prefix(self) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}"


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


_WAITING = frozenset({BudgetStatus.PENDING_APPROVAL})


@admin.register(AutonomyBudget)
class AutonomyBudgetAdmin(StaffMovesAdmin):
    list_display = ("id", "task_id", "agent_id", "status", "tenant", "approved_by", "expires_at",
                    "started_at")
    list_filter = ("status", StaffTenantFilter)
    search_fields = ("id", "task_id", "agent_id", "approved_by")
    actions = (
        _move_action(BudgetStatus.ACTIVE, "Approve", only_from=_WAITING, move="approve"),
        _move_action(BudgetStatus.REJECTED, "Reject", only_from=_WAITING, move="reject"),
        _move_action(BudgetStatus.COMPLETED, "Complete"),
        control_pause, control_resume, control_cancel,
    )


@admin.register(ImprovementIntake)
class ImprovementIntakeAdmin(StaffMovesAdmin):
    list_display = ("id", "title", "status", "research_type", "urgency", "tenant", "started_at")
    list_filter = ("status", "research_type", "urgency", StaffTenantFilter)
    search_fields = ("id", "title", "summary", "source", "decline_key")
    actions = tuple(
        _move_action(target, MOVE_LABELS[target])
        for target in IntakeStatus.values
        if target in MOVE_LABELS
    )

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "evidence"]

    @admin.display(description="evidence")
    def evidence(self, obj):
        panels = [html for render in INTAKE_PANELS if (html := render(obj))]
        return format_html_join("", "{}", ((html,) for html in panels)) if panels else "—"


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ProcessAdmin):
    list_display = ("id", "workflow_name", "status", "trigger_type", "tenant", "started_at",
                    "duration_ms")
    list_filter = ("status", "trigger_type", StaffTenantFilter)
    search_fields = ("id", "workflow_name", "job_id", "error")
    actions = (control_pause, control_resume, control_cancel)


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("created_at", "action", "process_type", "process_link", "state_before",
                    "state_after", "actor", "actor_name", "cause", "path", "reason",
                    "request_id", "tenant")
    list_filter = ("action", "cause", "path", "process_type", StaffTenantFilter)
    search_fields = ("process_id", "actor", "actor_name", "reason", "request_id")
    date_hierarchy = "created_at"

    @admin.display(description="process", ordering="process_id")
    def process_link(self, obj):
        kind = kind_for_type(obj.process_type)
        if kind is None:
            return obj.process_id
        meta = kind.model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.process_id])
        return format_html('<a href="{}">{}</a>', url, obj.process_id)


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Batches are made through the API or the hub page and run by the worker: staff read
    them here (the item list is the snapshot of matched ids, shown on the page only)."""

    list_display = ("id", "action", "state", "matched", "done", "skipped", "failed",
                    "created_by", "tenant", "created_at", "finished_at")
    list_filter = ("state", "action", StaffTenantFilter)
    search_fields = ("id", "created_by", "reason")
    date_hierarchy = "created_at"
    list_per_page = 50

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # The list never needs the snapshot of up to 10,000 ids.
        url_name = getattr(request.resolver_match, "url_name", "") or ""
        return queryset.defer("items") if url_name.endswith("changelist") else queryset

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]
