"""Bearer token authentication: `Authorization: Bearer a33_<prefix>_<secret>`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from agent33.observability import context as request_context
from agent33.sql import instance_from_row, select_columns
from agent33.tenancy.context import ALL_TENANTS, set_scope
from agent33.tenancy.models import ApiToken, Tenant
from agent33.tenancy.services import parse_token_text

__all__ = [
    "ApiPrincipal",
    "BearerTokenAuthentication",
    "token_from_header",
]

LAST_USED_RESOLUTION = timedelta(minutes=1)


@functools.cache
def _token_lookup_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    token, tenant = quote(ApiToken._meta.db_table), quote(Tenant._meta.db_table)
    tenant_key = quote(Tenant._meta.pk.column)
    token_tenant = quote(ApiToken._meta.get_field("tenant").column)
    prefix = quote(ApiToken._meta.get_field("prefix").column)
    return (
        f"SELECT {select_columns(ApiToken, connection, qualified=True)}, "  # noqa: S608
        f"{select_columns(Tenant, connection, qualified=True)} FROM {token} "
        f"LEFT JOIN {tenant} ON {tenant}.{tenant_key} = {token}.{token_tenant} "
        f"WHERE {token}.{prefix} = %s"
    )


def _load_token(prefix: str) -> ApiToken | None:
    """The token and its tenant as the database has them now.

    Read on every request, never remembered: a revoked token, a deactivated tenant or an
    expiry changed by any path (the service, the admin, `manage.py revoke_token`, psql) is
    refused on the very next request on every worker and every host, with no cache to
    invalidate. One indexed statement written from the models' metadata: the ORM's
    `select_related` lookup costs several times as much CPU per request
    (bench/auth_overhead.py prints both)."""
    with connection.cursor() as cursor:
        cursor.execute(_token_lookup_sql(connection.vendor), [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(ApiToken._meta.concrete_fields)
    token = instance_from_row(ApiToken, row[:width], connection)
    tenant = None
    if token.tenant_id is not None and row[width] is not None:
        tenant = instance_from_row(Tenant, row[width:], connection)
    ApiToken._meta.get_field("tenant").set_cached_value(token, tenant)
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
        return f"token:{self.token.name} ({self.token.display_prefix})"

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
