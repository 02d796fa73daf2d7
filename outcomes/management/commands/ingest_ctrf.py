"""Record a CTRF test report (a file) as a tenant's outcome events, as POST /v1/outcomes/ctrf
does: `manage.py ingest_ctrf reports/benchmarks.ctrf.json --tenant acme [--domain D]`."""

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant
from outcomes.ctrf import ctrf_ingest


class Command(BaseCommand):
    help = "Record a CTRF report's passed and failed tests as outcome events of a tenant."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CTRF JSON report.")
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument(
            "--domain", help="Domain of the events (default: benchmarks.<results.tool.name>)."
        )

    def handle(self, *args, file: str, tenant: str, domain: str | None = None, **options):
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            report = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from None
        except RecursionError:
            raise CommandError(f"{file} is nested too deeply to be a CTRF report.") from None
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"Unknown tenant '{tenant}'.")
        try:
            with tenant_scope(owner):
                ingested = ctrf_ingest(tenant=owner, report=report, domain=domain)
        except ValidationError as exc:
            problems = "; ".join(
                f"{where}: {' '.join(messages)}" for where, messages in exc.message_dict.items()
            )
            raise CommandError(f"{file} is not a valid CTRF report: {problems}") from None
        self.stdout.write(
            f"Recorded {ingested.created} event(s) for tenant {owner.slug} "
            f"in domain {ingested.domain}."
        )
