"""`manage.py rotate_provider_keys`: re-encrypt every stored provider key with the first key
in AGENT33_SECRET_KEYS.

Rotation without downtime: put the new key first in AGENT33_SECRET_KEYS (keep the old ones
after it) and deploy; run this command; then remove the old keys. Keys written with the
DEBUG fallback key (derived from SECRET_KEY) are read too, so setting AGENT33_SECRET_KEYS
after a local trial and running this once moves them over.

Each row is updated only if its ciphertext is still the one that was read, so a key replaced
through the API meanwhile is not overwritten. Undecryptable rows are listed (tenant and
provider, never key material) and make the command exit non-zero after the others are done.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from multimodal import encryption
from multimodal.models import ProviderCredential


class Command(BaseCommand):
    help = "Re-encrypt all stored provider keys with the first key in AGENT33_SECRET_KEYS."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Check that every key can be decrypted and count them; change nothing.",
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        if not encryption.configured_keys():
            raise CommandError(
                f"{encryption.SETTING} is empty: set it to one or more Fernet keys (the first "
                f"encrypts) before rotating; generate one with: {encryption.GENERATE_HINT}"
            )
        try:
            encryption.require_available()
        except encryption.EncryptionUnavailable as exc:
            raise CommandError(exc.detail) from None

        fallback = (encryption.debug_fallback_key(),)
        total = rotated = from_older = changed_meanwhile = 0
        failed: list[str] = []
        rows = ProviderCredential.all_tenants.order_by("tenant_id", "provider").values_list(
            "pk", "tenant_id", "provider", "api_key_encrypted"
        )
        for pk, tenant_id, provider, token in rows.iterator(chunk_size=500):
            total += 1
            try:
                current = encryption.is_current(token)
                new_token = encryption.rotate(token, extra_decrypt_keys=fallback)
            except encryption.UndecryptableKey:
                failed.append(f"{tenant_id}/{provider}")
                continue
            if not current:
                from_older += 1
            if dry_run:
                continue
            updated = ProviderCredential.all_tenants.filter(
                pk=pk, api_key_encrypted=token
            ).update(api_key_encrypted=new_token)
            if updated:
                rotated += 1
            else:
                changed_meanwhile += 1  # replaced through the API: already under the new key

        verb = "would be re-encrypted" if dry_run else "re-encrypted"
        count = total - len(failed) if dry_run else rotated
        self.stdout.write(
            f"{count} of {total} provider keys {verb} with the first key in "
            f"{encryption.SETTING} ({from_older} were under an older key"
            + (f", {changed_meanwhile} changed meanwhile and were left as they are"
               if changed_meanwhile else "")
            + ")."
        )
        if failed:
            raise CommandError(
                f"{len(failed)} stored keys could not be decrypted with any key in "
                f"{encryption.SETTING} (nor the DEBUG fallback key): {', '.join(failed)}. "
                "Add the key they were encrypted with back to the setting and run this again, "
                "or have those tenants store their keys again."
            )
