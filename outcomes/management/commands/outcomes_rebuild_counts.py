"""Recompute the dashboard summary counts from the events (after a raw load or a repair)."""

from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.models import Tenant
from outcomes.services import outcome_counts_rebuild


class Command(BaseCommand):
    help = "Recompute outcome summary counts from the events, for one tenant or all."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Tenant slug (default: every tenant).")

    def handle(self, *args, tenant=None, **options):
        target = None
        if tenant:
            target = Tenant.objects.filter(slug=tenant).first()
            if target is None:
                raise CommandError(f"Unknown tenant '{tenant}'.")
        rows = outcome_counts_rebuild(tenant=target)
        self.stdout.write(f"Rebuilt {rows} count row(s) for {tenant or 'every tenant'}.")
