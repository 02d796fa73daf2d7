"""Remove raw outcome events past AGENT33_EVENT_RETENTION_DAYS now, as the worker's periodic
job does (outcomes.services.events_purge_expired); rollups stay."""

from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from outcomes.services import PURGE_MAX_BATCHES, events_purge_expired


class Command(BaseCommand):
    help = "Remove raw outcome events older than AGENT33_EVENT_RETENTION_DAYS (rollups stay)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int,
                            help="Retention in days for this run (default: the setting).")
        parser.add_argument("--all", action="store_true",
                            help=f"Run until done, not only {PURGE_MAX_BATCHES} batches.")

    def handle(self, *args, days=None, all=False, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        limit = 10**9 if all else PURGE_MAX_BATCHES
        if days is None:
            removed = events_purge_expired(max_batches=limit)
        else:
            with override_settings(AGENT33_EVENT_RETENTION_DAYS=days):
                removed = events_purge_expired(max_batches=limit)
        self.stdout.write(f"Removed {removed} outcome event(s).")
