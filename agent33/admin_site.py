"""The project's admin site: Django's, plus staff pages (the Operations Hub, the Outcomes
dashboard) that apps register and that appear on the index beside their app's models."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.urls import path, reverse

__all__ = ["AdminPage", "Agent33AdminConfig", "Agent33AdminSite"]


@dataclass(frozen=True)
class AdminPage:
    route: str  # e.g. "operations/hub/"
    view: object  # a view function taking (request, **kwargs); wrapped in admin_view
    name: str  # URL name inside the admin namespace, e.g. "operations_hub"
    title: str
    app_label: str
    permission: str | None = None  # e.g. "operations.view_workflowrun"; enforced (403)
    in_index: bool = True  # False for JSON endpoints that serve a page


class Agent33AdminSite(admin.AdminSite):
    site_header = "AGENT33 control plane"
    site_title = "AGENT33 admin"
    index_title = "Control plane"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pages: list[AdminPage] = []

    def register_page(self, page: AdminPage) -> None:
        self._pages = [p for p in self._pages if p.name != page.name] + [page]

    def page_allowed(self, request, page: AdminPage) -> bool:
        return page.permission is None or request.user.has_perm(page.permission)

    def get_urls(self):
        # Page routes come first: the admin's app_label catch-all would otherwise swallow them.
        pages = [
            path(page.route, self.admin_view(self._guarded(page)), name=page.name)
            for page in self._pages
        ]
        return pages + super().get_urls()

    def _guarded(self, page: AdminPage):
        def view(request, *args, **kwargs):
            if not self.page_allowed(request, page):
                raise PermissionDenied(f"You may not open {page.title}.")
            return page.view(request, *args, **kwargs)

        return view

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        by_label = {app["app_label"]: app for app in app_list}
        for page in self._pages:
            if not page.in_index or not self.page_allowed(request, page):
                continue
            if app_label and page.app_label != app_label:
                continue
            app = by_label.get(page.app_label)
            if app is None:
                continue
            app["models"].insert(
                0,
                {
                    "name": page.title,
                    "object_name": page.name,
                    "perms": {"view": True},
                    "admin_url": reverse(f"{self.name}:{page.name}"),
                    "add_url": None,
                    "view_only": True,
                },
            )
        return app_list


class Agent33AdminConfig(AdminConfig):
    default_site = "agent33.admin_site.Agent33AdminSite"
