from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.models import Tenant
from agent33.tenancy.services import token_issue


class Command(BaseCommand):
    help = (
        "Issue an API token: issue_token (--tenant SLUG | --all-tenants) --scopes a,b "
        "[--name N] [--expires-in-days D]. The token is printed alone on the last line."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--tenant", help="tenant slug")
        target.add_argument(
            "--all-tenants", action="store_true", help="platform operator token (cross-tenant)"
        )
        parser.add_argument("--scopes", required=True, help="comma-separated scopes")
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args, **options):
        tenant = None
        if options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"Unknown tenant: {options['tenant']}")
        try:
            issued = token_issue(
                tenant=tenant,
                scopes=options["scopes"].split(","),
                name=options["name"],
                expires_in_days=options["expires_in_days"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        token = issued.token
        who = f"tenant {tenant.slug}" if tenant else "all tenants (operator)"
        self.stderr.write(
            f"Issued token '{token.name}' for {who} with scopes {', '.join(token.scopes)}"
            + (f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "")
            + ". It is shown once:"
        )
        self.stdout.write(issued.plaintext)
