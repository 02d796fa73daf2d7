from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.models import ApiToken, Tenant


class Command(BaseCommand):
    help = "List API tokens (never their secrets): list_tokens [--tenant SLUG]"

    def add_arguments(self, parser):
        parser.add_argument("--tenant", default=None)

    def handle(self, *args, tenant, **options):
        tokens = ApiToken.objects.select_related("tenant").order_by("created_at")
        if tenant:
            if not Tenant.objects.filter(slug=tenant).exists():
                raise CommandError(f"Unknown tenant: {tenant}")
            tokens = tokens.filter(tenant_id=tenant)
        header = ("PREFIX", "TENANT", "NAME", "STATE", "SCOPES", "EXPIRES", "LAST USED")
        rows = [
            (
                t.display_prefix,
                t.tenant_id or "(operator)",
                t.name,
                t.state(),
                ",".join(t.scopes),
                f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "-",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
            )
            for t in tokens
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        if not rows:
            self.stdout.write("(no tokens)")
