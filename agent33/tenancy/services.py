"""Every write to tenants and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agent33.auth.scopes import invalid_scopes, operator_only_scopes

from .models import ApiToken, Tenant, hash_token_secret

__all__ = ["IssuedToken", "tenant_create", "token_find_by_text", "token_issue", "token_revoke"]


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean(validate_unique=False)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": [f"Tenant '{slug}' already exists."]})
    tenant.save(force_insert=True)
    return tenant


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str  # shown once, never stored


def token_issue(
    *,
    tenant: Tenant | None,
    scopes: list[str],
    name: str = "",
    created_by=None,
    expires_in_days: int | None = None,
    expires_at=None,
) -> IssuedToken:
    scopes = list(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    if not scopes:
        raise ValidationError({"scopes": ["At least one scope is required."]})
    unknown = invalid_scopes(scopes)
    if unknown:
        raise ValidationError({"scopes": [f"Unknown scopes: {', '.join(unknown)}"]})
    cross_tenant = operator_only_scopes(scopes) if tenant is not None else []
    if cross_tenant:
        raise ValidationError({"scopes": [
            f"Only an all-tenants (operator) token may hold {', '.join(cross_tenant)}."
        ]})
    if expires_in_days is not None:
        if expires_in_days <= 0:
            raise ValidationError({"expires_in_days": ["Must be a positive number of days."]})
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    prefix, secret, plaintext = ApiToken.generate()
    token = ApiToken.objects.create(
        prefix=prefix,
        secret_hash=hash_token_secret(secret),
        tenant=tenant,
        name=name or ("operator token" if tenant is None else f"{tenant.slug} token"),
        scopes=scopes,
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, plaintext=plaintext)


def parse_token_text(text: str) -> tuple[str, str] | None:
    """`a33_<prefix>_<secret>` → (prefix, secret); None when malformed."""
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != "a33" or not parts[1] or not parts[2]:
        return None
    if len(parts[1]) > 16 or len(parts[2]) > 128:
        return None
    return parts[1], parts[2]


def token_find_by_text(text: str) -> ApiToken | None:
    """Find a token by its full text or by its public prefix (`a33_<prefix>` or `<prefix>`)."""
    parsed = parse_token_text(text)
    if parsed:
        token = ApiToken.objects.filter(prefix=parsed[0]).first()
        return token if token and token.matches(parsed[1]) else None
    prefix = text.removeprefix("a33_").strip("_")
    return ApiToken.objects.filter(prefix=prefix).first() if prefix else None


def token_revoke(*, token: ApiToken) -> ApiToken:
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    token.refresh_from_db(fields=["revoked_at"])
    from agent33.auth.revocation import bump_auth_generation

    bump_auth_generation()  # every worker's next request reads the token again
    return token
