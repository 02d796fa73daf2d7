"""Bearer token authentication: `Authorization: Bearer a33_<prefix>_<secret>`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from agent33.observability import context as request_context
from agent33.tenancy.context import ALL_TENANTS, set_scope
from agent33.tenancy.models import ApiToken, Tenant
from agent33.tenancy.services import parse_token_text

from .revocation import auth_generation

__all__ = [
    "ApiPrincipal",
    "BearerTokenAuthentication",
    "forget_cached_tokens",
    "token_from_header",
]

LAST_USED_RESOLUTION = timedelta(minutes=1)
_CACHE_MAX_ENTRIES = 10_000

# Tokens found in the database recently, by prefix, so a busy client costs no query per
# request. The secret is still checked against the stored hash on every request, and a
# remembered token is used only while the auth generation is the one it was remembered
# under (agent33/auth/revocation.py): any revocation or deactivation, in any process,
# changes the generation, and the next request here forgets every remembered token.
_recent_tokens: dict[str, tuple[float, ApiToken]] = {}
_generation_seen: list[object] = [object()]  # a value no generation equals


def forget_cached_tokens() -> None:
    _recent_tokens.clear()


def _load_token(prefix: str) -> ApiToken | None:
    generation = auth_generation()
    if generation != _generation_seen[0]:
        _recent_tokens.clear()
        _generation_seen[0] = generation
    ttl = settings.AGENT33_TOKEN_CACHE_SECONDS
    now = time.monotonic()
    cached = _recent_tokens.get(prefix)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    token = ApiToken.objects.select_related("tenant").filter(prefix=prefix).first()
    if token is not None and ttl > 0:
        if len(_recent_tokens) >= _CACHE_MAX_ENTRIES:
            _recent_tokens.clear()
        _recent_tokens[prefix] = (now, token)
    return token


@dataclass(frozen=True)
class ApiPrincipal:
    """request.user for token requests: who is calling, for which tenant, with which scopes."""

    token: ApiToken

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    @property
    def tenant(self) -> Tenant | None:
        return self.token.tenant

    @property
    def scopes(self) -> list[str]:
        return list(self.token.scopes)

    @property
    def is_operator(self) -> bool:
        return self.token.tenant_id is None

    @property
    def actor_label(self) -> str:
        """How records name this caller: the token's prefix, unique and never reused (its
        name, which people choose and may repeat, is `actor_name`)."""
        return f"token:{self.token.display_prefix}"

    @property
    def actor_name(self) -> str:
        return self.token.name

    def __str__(self) -> str:
        return self.actor_label


def token_from_header(header: bytes) -> ApiToken:
    """The valid token an Authorization header carries, or AuthenticationFailed saying why."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        raise exceptions.AuthenticationFailed(
            "Malformed Authorization header; expected 'Bearer <token>'."
        )
    try:
        text = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("Invalid token.") from None
    parsed = parse_token_text(text)
    if parsed is None:
        raise exceptions.AuthenticationFailed("Invalid token.")
    prefix, secret = parsed
    token = _load_token(prefix)
    # Same message for unknown and wrong secret: no oracle for valid prefixes.
    if token is None or not token.matches(secret):
        raise exceptions.AuthenticationFailed("Invalid token.")
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("Token has been revoked.")
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed("Token has expired.")
    if token.tenant is not None and not token.tenant.is_active:
        raise exceptions.AuthenticationFailed("Tenant is inactive.")
    return token


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None  # anonymous; the permission class turns that into 401
        token = token_from_header(header)
        now = timezone.now()
        self._touch(token, now)
        # The one place API traffic sets the tenant scope (TenantContextMiddleware clears it).
        set_scope(ALL_TENANTS if token.tenant is None else token.tenant)
        # Every later log line of this request names its tenant and token (never the secret).
        request_context.update(tenant=token.tenant_id or "*", token_prefix=token.display_prefix)
        return ApiPrincipal(token), token

    @staticmethod
    def _touch(token: ApiToken, now) -> None:
        """Record last use at most once a minute, so most requests write nothing."""
        if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
            return
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="agent33"'
