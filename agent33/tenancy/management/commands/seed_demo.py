"""Idempotent demo data: tenants, a staff login, a token, and each app's demo records."""

import importlib
import importlib.util
import os

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from guardian.shortcuts import assign_perm

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import ApiToken, Tenant
from agent33.tenancy.services import token_issue
from agent33.tenancy.staff import ACCESS_TENANT_PERM

DEMO_TENANTS = (("demo", "Demo Inc."), ("acme", "ACME Robotics"))
DEMO_TOKEN_NAME = "demo token"


class Command(BaseCommand):
    help = "Fill the database with demo data (safe to run again)."

    def handle(self, *args, **options):
        tenants = []
        for slug, name in DEMO_TENANTS:
            tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
            tenants.append(tenant)
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "agent33-demo")
        user_model = get_user_model()
        admin_user, created = user_model.objects.get_or_create(
            username="demo-admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            admin_user.set_password(password)
            admin_user.save()
        staff_user, created = user_model.objects.get_or_create(
            username="demo-staff", defaults={"is_staff": True}
        )
        if created:
            staff_user.set_password(password)
            staff_user.save()
        assign_perm(ACCESS_TENANT_PERM, staff_user, tenants[0])

        for tenant in tenants:
            with tenant_scope(tenant):
                for config in apps.get_app_configs():
                    module_name = f"{config.name}.demo"
                    if importlib.util.find_spec(module_name) is not None:
                        importlib.import_module(module_name).seed_demo(tenant=tenant)

        # A fresh demo token each run (the old one's secret cannot be shown again).
        ApiToken.objects.filter(tenant=tenants[0], name=DEMO_TOKEN_NAME).delete()
        issued = token_issue(tenant=tenants[0], scopes=["admin"], name=DEMO_TOKEN_NAME)
        self.stdout.write(
            "Demo data ready.\n"
            "  Admin:      http://127.0.0.1:8000/admin/\n"
            f"  Staff login: demo-admin / {password}  (superuser; demo-staff sees tenant "
            f"'{tenants[0].slug}' only)\n"
            f"  API token ({tenants[0].slug}, admin scope): {issued.plaintext}\n"
            f"  Try: curl -H 'Authorization: Bearer {issued.plaintext}' "
            "http://127.0.0.1:8000/v1/auth/whoami"
        )
