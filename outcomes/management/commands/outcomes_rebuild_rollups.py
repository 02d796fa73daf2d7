"""Recompute the series rollups from the raw events (after a raw load or a repair)."""

from datetime import UTC, datetime, time

from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.models import Tenant
from outcomes.services import outcome_rollups_rebuild


class Command(BaseCommand):
    help = ("Recompute outcome rollups from the events, for one tenant or all; with "
            "retention on, only after its cutoff (older rollups are kept).")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Tenant slug (default: every tenant).")
        parser.add_argument("--since", help="A UTC date (YYYY-MM-DD): rebuild from it on.")

    def handle(self, *args, tenant=None, since=None, **options):
        target = None
        if tenant:
            target = Tenant.objects.filter(slug=tenant).first()
            if target is None:
                raise CommandError(f"Unknown tenant '{tenant}'.")
        start = None
        if since:
            try:
                start = datetime.combine(datetime.strptime(since, "%Y-%m-%d").date(), time.min,
                                         UTC)
            except ValueError:
                raise CommandError("--since must be a date, YYYY-MM-DD.") from None
        rows = outcome_rollups_rebuild(tenant=target, since=start)
        self.stdout.write(f"Rebuilt {rows} rollup row(s) for {tenant or 'every tenant'}.")
