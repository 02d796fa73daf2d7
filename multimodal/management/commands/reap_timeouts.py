"""Fail multimodal requests stuck in `processing` past their deadline plus grace.

Celery beat runs the same thing every 30 s (multimodal.tasks.reap_timeouts).
"""

from django.core.management.base import BaseCommand, CommandError

from multimodal.services import reap_timeouts


class Command(BaseCommand):
    help = "Fail multimodal requests still processing past their deadline plus a grace period."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="Seconds past the deadline before a request is failed "
            "(default: MULTIMODAL_REAPER_GRACE_SECONDS, 30).",
        )

    def handle(self, *args, grace=None, **options):
        if grace is not None and grace < 0:
            raise CommandError("--grace must be zero or more seconds.")
        reaped = reap_timeouts(grace_seconds=grace)
        for request_id in reaped:
            self.stdout.write(f"failed {request_id}: timed out")
        self.stdout.write(f"Reaped {len(reaped)} timed-out request(s).")
