from django.core.management.base import BaseCommand, CommandError

from agent33.tenancy.services import token_find_by_text, token_revoke


class Command(BaseCommand):
    help = "Revoke a token by its full text or its prefix (as list_tokens shows it)."

    def add_arguments(self, parser):
        parser.add_argument("token", help="the token, or its prefix a33_<prefix>")

    def handle(self, *args, token, **options):
        found = token_find_by_text(token.strip())
        if found is None:
            raise CommandError("No such token.")
        if found.revoked_at:
            raise CommandError(f"Token {found.display_prefix} was already revoked.")
        token_revoke(token=found)
        self.stdout.write(f"Revoked {found.display_prefix} ({found.name})")
