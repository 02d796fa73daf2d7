from django.core.management.base import BaseCommand

from agent33.observability.row_counts import install_row_counters


class Command(BaseCommand):
    help = (
        "Recount the row counts /metrics reads (processes by status, multimodal requests, "
        "controls) from the rows themselves, reinstalling the triggers that keep them. The "
        "triggers keep the counts right on every write; this is for after rows were changed "
        "with the triggers disabled."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        recounted = install_row_counters(using=options["database"], recount=True)
        self.stdout.write(f"Recounted {len(recounted)} tables: {', '.join(recounted)}")
