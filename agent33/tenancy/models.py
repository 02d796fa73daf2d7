from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from .managers import AllTenantsManager, TenantScopedManager

__all__ = ["ApiToken", "IdempotencyRecord", "RateCounter", "Tenant", "TenantOwnedModel"]

TOKEN_PREFIX = "a33"
slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1-63 lowercase letters, digits and inner hyphens.",
)


class Tenant(models.Model):
    # The slug is the primary key: it is the `tenant_id` every API shows and takes, so
    # tenant-owned rows carry it directly and no join is needed to render them.
    slug = models.CharField(max_length=63, primary_key=True, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]
        permissions = [("access_tenant", "Can see and manage this tenant's data in the admin")]

    def __str__(self) -> str:
        return self.slug


class TenantOwnedModel(models.Model):
    """Base for every tenant-owned table.

    `objects` (first, so the default manager) refuses to query without a tenant scope;
    `all_tenants` is the explicit escape hatch. Subclasses lead every index with `tenant`.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, db_index=True)

    objects = TenantScopedManager()
    all_tenants = AllTenantsManager()

    class Meta:
        abstract = True
        base_manager_name = "all_tenants"

    @property
    def tenant_slug(self) -> str:
        return self.tenant_id


def hash_token_secret(secret: str) -> str:
    # Secrets are 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    """`a33_<prefix>_<secret>`. Only the secret's hash is stored; lookup is by prefix."""

    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tokens",
        help_text="Empty for a platform operator token (all tenants).",
    )
    name = models.CharField(max_length=200)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="apitoken_tenant_created")]

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.prefix}_…)"

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None

    @property
    def display_prefix(self) -> str:
        return f"{TOKEN_PREFIX}_{self.prefix}"

    @staticmethod
    def generate() -> tuple[str, str, str]:
        """Return (prefix, secret, full token)."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        return prefix, secret, f"{TOKEN_PREFIX}_{prefix}_{secret}"

    def matches(self, secret: str) -> bool:
        return secrets.compare_digest(self.secret_hash, hash_token_secret(secret))

    def state(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` used by one token: the request's fingerprint and, once it
    finished, the response to replay (to that token only). The unique (token, key) row is
    the lock: concurrent requests with the same key cannot both insert it."""

    IN_FLIGHT = "in_flight"
    COMPLETED = "completed"

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, default=IN_FLIGHT)
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=100, blank=True)
    response_body = models.BinaryField(blank=True, default=b"")
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_token_key_unique"),
            models.CheckConstraint(
                condition=models.Q(state__in=["in_flight", "completed"]),
                name="idempotency_state_valid",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.token_id}:{self.key}"


class RateCounter(models.Model):
    """What one caller used in its current window (a token's requests, a tenant's events),
    when no Redis is configured: every process of the deployment counts in this one row, so
    gunicorn's workers cannot each grant the whole allowance (agent33/auth/counters.py).
    A row is reused window after window; rows of callers idle for an hour are purged
    hourly. On PostgreSQL the table is UNLOGGED (no WAL, no fsync per count)."""

    key = models.CharField(max_length=255, primary_key=True)
    window_ends_at = models.BigIntegerField()  # Unix seconds; the window is [end - length, end)
    used = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["window_ends_at"], name="ratecounter_window_end")]

    def __str__(self) -> str:
        return f"{self.key}: {self.used} until {self.window_ends_at}"
