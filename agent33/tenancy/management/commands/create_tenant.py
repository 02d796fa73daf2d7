from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant: create_tenant <slug> [--name NAME]"

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args, slug, name, **options):
        try:
            tenant = tenant_create(slug=slug, name=name)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.name})")
