"""Staff see background jobs, above all the failed ones and why (the error and its
traceback), and may queue a failed one again. Superusers see every job; other staff only
the jobs of the tenants they are granted (platform jobs, such as the reaper, are
superusers' only)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.tasks.base import TaskResultStatus
from django.utils.html import format_html
from django_tasks_db.admin import DBTaskResultAdmin
from django_tasks_db.models import DBTaskResult

from agent33.tenancy.staff import staff_tenants

from . import enqueue
from .backends import split_meta
from .selectors import job_name_of, jobs_in_scope


def _meta(obj: DBTaskResult) -> dict:
    return split_meta(obj.args_kwargs.get("kwargs") or {})[1]


class JobResultAdmin(DBTaskResultAdmin):
    list_display = ("job", "status", "attempts", "tenant", "error", "enqueued_at",
                    "run_after_display", "finished_at")
    list_filter = ("status", "task_path", "queue_name")
    search_fields = ("id", "task_path", "exception_class_path")
    actions = ["queue_again"]

    def get_queryset(self, request):
        ordering = self.get_ordering(request)
        tenants = None if request.user.is_superuser else \
            staff_tenants(request.user).values_list("slug", flat=True)
        return jobs_in_scope(tenants).order_by(*ordering)

    @admin.display(description="job", ordering="task_path")
    def job(self, obj: DBTaskResult) -> str:
        return job_name_of(obj.task_path)

    @admin.display(description="tries")
    def attempts(self, obj: DBTaskResult) -> int:
        return len(obj.worker_ids)

    @admin.display(description="tenant")
    def tenant(self, obj: DBTaskResult) -> str:
        return _meta(obj).get("tenant_id") or "—"

    @admin.display(description="last error")
    def error(self, obj: DBTaskResult) -> str:
        if not obj.traceback:
            return "—"
        last_line = obj.traceback.strip().splitlines()[-1]
        return format_html("<code>{}</code>", last_line[:200])

    @admin.display(description="next try")
    def run_after_display(self, obj: DBTaskResult):
        if obj.status != TaskResultStatus.READY:
            return "—"
        return self.display_run_after(obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("django_tasks_database.change_dbtaskresult")

    @admin.action(description="Queue the selected failed jobs again (all their tries)")
    def queue_again(self, request, queryset):
        queued = 0
        for row in queryset.filter(status=TaskResultStatus.FAILED):
            kwargs, meta = split_meta(row.args_kwargs.get("kwargs") or {})
            try:
                with transaction.atomic():
                    enqueue(job_name_of(row.task_path), tenant_id=meta.get("tenant_id"),
                            time_limit=meta.get("time_limit"), **kwargs)
                    row.delete()
            except LookupError as exc:  # its code is gone: it cannot run again
                self.message_user(request, f"{row.pk}: {exc}", messages.ERROR)
                continue
            queued += 1
        self.message_user(request, f"{queued} failed jobs queued again.", messages.SUCCESS)


admin.site.unregister(DBTaskResult)
admin.site.register(DBTaskResult, JobResultAdmin)
