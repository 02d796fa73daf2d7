"""Multimodal records: the per-tenant policy, stored files, requests and their results."""

from __future__ import annotations

import secrets
from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agent33.ids import PrefixedIdField
from agent33.tenancy.models import TenantOwnedModel

from . import encryption
from .choices import ArtifactOrigin, Modality, RequestState
from .network import allowed_networks, refusal
from .sniffing import EXTENSIONS

__all__ = [
    "MAX_DAILY_SPEND_LIMIT",
    "POLICY_DEFAULTS",
    "POLICY_LIMITS",
    "Artifact",
    "CloudProvider",
    "DailySpend",
    "EngineThroughput",
    "MultimodalPolicy",
    "MultimodalRequest",
    "MultimodalResult",
    "ProviderCredential",
    "ProviderPrice",
    "RequestCount",
    "StorageUsage",
    "artifact_upload_to",
    "validate_base_url",
    "validate_modalities",
]

# DESIGN §5.2 defaults, in force until a tenant's policy is set.
POLICY_DEFAULTS = {
    "max_text_chars": 5000,
    "max_artifact_bytes": 5_000_000,
    "max_timeout_seconds": 300,
    "allowed_modalities": list(Modality.values),
    "max_storage_bytes": 1 << 30,  # 1 GiB of stored artifacts per tenant
}
# Sane ceilings: a tenant admin may loosen its guardrails, but not to absurd values.
POLICY_LIMITS = {
    "max_text_chars": 100_000,
    "max_artifact_bytes": 100_000_000,
    "max_timeout_seconds": 3600,
    "max_storage_bytes": 1 << 40,
}
# Dollars, with at most 6 decimal places: a limit round-trips exactly through SQLite's
# floats at this size (13 significant digits).
MAX_DAILY_SPEND_LIMIT = Decimal("1000000")


def validate_modalities(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Must be a list of modality names.")
    unknown = sorted(set(value) - set(Modality.values))
    if unknown:
        raise ValidationError(
            f"Unknown modalities: {', '.join(unknown)}; known: {', '.join(Modality.values)}."
        )
    if len(set(value)) != len(value):
        raise ValidationError("Modalities must not repeat.")


def _default_modalities() -> list[str]:
    return list(Modality.values)


class MultimodalPolicy(TenantOwnedModel):
    """One row per tenant once set; until then `services.policy_for()` returns the defaults."""

    max_text_chars = models.PositiveIntegerField(
        default=POLICY_DEFAULTS["max_text_chars"],
        validators=[MinValueValidator(1), MaxValueValidator(POLICY_LIMITS["max_text_chars"])],
    )
    max_artifact_bytes = models.PositiveBigIntegerField(
        default=POLICY_DEFAULTS["max_artifact_bytes"],
        validators=[MinValueValidator(1), MaxValueValidator(POLICY_LIMITS["max_artifact_bytes"])],
    )
    max_timeout_seconds = models.PositiveIntegerField(
        default=POLICY_DEFAULTS["max_timeout_seconds"],
        validators=[
            MinValueValidator(1),
            MaxValueValidator(POLICY_LIMITS["max_timeout_seconds"]),
        ],
    )
    # blank=True: an empty list is a valid policy (every modality switched off).
    allowed_modalities = models.JSONField(
        default=_default_modalities, blank=True, validators=[validate_modalities]
    )
    # What the tenant may keep stored (uploads, inline inputs, provider outputs): an operator's
    # decision (services/artifacts.py holds uploads to it).
    max_storage_bytes = models.PositiveBigIntegerField(
        default=POLICY_DEFAULTS["max_storage_bytes"],
        validators=[MinValueValidator(0), MaxValueValidator(POLICY_LIMITS["max_storage_bytes"])],
        help_text="Bytes of artifacts the tenant may keep stored (operators and staff set it).",
    )
    # None: no limit. See services/spend.py for how requests are held to it.
    daily_spend_limit_usd = models.DecimalField(
        max_digits=13, decimal_places=6, null=True, blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(MAX_DAILY_SPEND_LIMIT)],
        help_text="USD per UTC day for all of the tenant's multimodal requests; empty: no "
        "limit.",
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True, editable=False)

    class Meta:
        verbose_name = "multimodal policy"
        verbose_name_plural = "multimodal policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="mmpolicy_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"policy of {self.tenant_id}"

    @property
    def is_default(self) -> bool:
        return self._state.adding


def artifact_upload_to(instance: Artifact, filename: str) -> str:
    """`<tenant>/multimodal/<yyyy>/<mm>/<dd>/<random>-<artifact id>.<ext>`: tenant first
    (per-tenant storage rules and clean-up), a folder per day (retention by date, and no new
    directory per file), then 144 random bits so a path cannot be guessed from an id."""
    ext = EXTENSIONS.get(instance.content_type, "bin")
    day = instance.created_at.strftime("%Y/%m/%d")
    return (f"{instance.tenant_id}/multimodal/{day}/"
            f"{secrets.token_urlsafe(18)}-{instance.pk}.{ext}")


class Artifact(TenantOwnedModel):
    """A stored file: an upload, a request's inline input, or a provider's output. The
    content type is sniffed from the bytes; the bytes live in Django's default storage."""

    id = PrefixedIdField(prefix="artifact")
    content_type = models.CharField(max_length=100)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=artifact_upload_to, max_length=255)
    origin = models.CharField(
        max_length=20, choices=ArtifactOrigin.choices, default=ArtifactOrigin.UPLOAD
    )
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="artifact_tenant_created")]

    def __str__(self) -> str:
        return self.pk

    @property
    def is_audio(self) -> bool:
        return self.content_type.startswith("audio/")

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.content_type, "bin")


class MultimodalRequest(TenantOwnedModel):
    id = PrefixedIdField(prefix="mmreq")
    modality = models.CharField(max_length=32, choices=Modality.choices)
    state = models.CharField(
        max_length=16, choices=RequestState.choices, default=RequestState.PENDING
    )
    provider = models.CharField(max_length=64)
    input_text = models.TextField(blank=True)
    # FK indexes are off: every index leads with tenant (see Meta.indexes).
    input_artifact = models.ForeignKey(
        Artifact,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="input_of",
        db_index=False,
    )
    requested_timeout_seconds = models.PositiveIntegerField(default=60)
    requested_by = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    # Execution bookkeeping: `deadline_at` is set when execution is claimed; `attempts`
    # counts task runs (a redelivery after a worker died is a second attempt).
    attempts = models.PositiveIntegerField(default=0)
    # A fresh token per execution claim: tasks carry it, so a straggler from an earlier
    # execution (reaped, then the request re-executed) cannot finish the new one.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    cancelled_by = models.CharField(max_length=200, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True)
    # The provider options the caller sent, validated against what the provider accepts.
    options = models.JSONField(default=dict, blank=True)
    # Spend of the current claim (services/spend.py): the usage it was estimated at, the
    # nano-dollars reserved against the tenant's daily limit, and the UTC day they count on.
    estimated_usage = models.JSONField(default=dict, blank=True, editable=False)
    reserved_nano_usd = models.BigIntegerField(default=0, editable=False)
    spend_day = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "multimodal request"
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="mmreq_tenant_created"),
            models.Index(
                fields=["tenant", "state", "modality", "created_at"], name="mmreq_tenant_state"
            ),
            # The Operations Hub: unfinished requests newest first (its default view), and
            # any one state newest first (its status filter).
            models.Index(
                fields=["tenant", "-created_at"],
                condition=Q(state__in=["pending", "processing"]),
                name="mmreq_tenant_active",
            ),
            models.Index(fields=["tenant", "state", "-created_at"], name="mmreq_tenant_state_new"),
            # The reaper's scan: processing rows by deadline.
            models.Index(fields=["tenant", "state", "deadline_at"], name="mmreq_tenant_deadline"),
            models.Index(fields=["tenant", "input_artifact"], name="mmreq_tenant_input"),
            # The hub's "Needs attention": requests that failed recently (failed rows only).
            models.Index(
                fields=["tenant", "finished_at"],
                condition=Q(state="failed"),
                name="mmreq_tenant_failed",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=RequestState.values), name="mmreq_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(modality__in=Modality.values), name="mmreq_modality_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.pk

    @property
    def result(self) -> MultimodalResult | None:
        """The result, if any (at most one exists: see MultimodalResult's constraint), read in
        the current tenant scope."""
        return MultimodalResult.objects.filter(tenant_id=self.tenant_id, request=self).first()


class MultimodalResult(TenantOwnedModel):
    """What an execution produced (completed) or why it did not (failed); one per request. A
    cancelled request has one only when the provider answered after the cancel: its cost
    (the output is not kept), so a day's spend is always the sum of its results' costs."""

    id = PrefixedIdField(prefix="mmres")
    # One result per request: the unique (tenant, request) constraint below is what makes a
    # redelivered task unable to record a second one. A plain FK (not OneToOne) so that the
    # only index on it leads with tenant.
    request = models.ForeignKey(
        MultimodalRequest, on_delete=models.CASCADE, related_name="results", db_index=False
    )
    state = models.CharField(max_length=16, choices=RequestState.choices)
    output_text = models.TextField(blank=True)
    output_artifact = models.ForeignKey(
        Artifact,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="output_of",
        db_index=False,
    )
    output_data = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Copied out of metadata so stats can aggregate without parsing JSON.
    provider = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # metadata.cost_usd as nano-dollars (None: unknown), so stats can sum it exactly.
    cost_nano_usd = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "multimodal result"
        indexes = [
            models.Index(fields=["tenant", "completed_at"], name="mmres_tenant_completed"),
            models.Index(fields=["tenant", "output_artifact"], name="mmres_tenant_output"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "request"], name="mmres_one_per_request"),
            models.CheckConstraint(
                condition=Q(state__in=[RequestState.COMPLETED, RequestState.FAILED,
                                       RequestState.CANCELLED]),
                name="mmres_state_final",
            ),
        ]

    def __str__(self) -> str:
        return self.pk


class RequestCount(TenantOwnedModel):
    """How many of a tenant's requests are in each (modality, provider, state): kept by
    database triggers as requests change (agent33.observability.row_counts), read by
    /metrics."""

    modality = models.CharField(max_length=32)
    provider = models.CharField(max_length=64)
    state = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0)

    class Meta:
        # Delta rows (agent33.observability.row_counts): a key's count is their sum.
        indexes = [
            models.Index(fields=["tenant", "modality", "provider", "state"], name="mmcount_key"),
        ]

    def __str__(self) -> str:
        return f"{self.modality}/{self.provider}/{self.state}: {self.count}"


class EngineThroughput(models.Model):
    """How fast an offline engine works on this platform's machines: seconds of compute per
    unit of input (pixels, characters, seconds of audio), measured from completed requests
    (an exponentially weighted average, 1/5 weight to each new one). Estimates for spend
    limits use it instead of a guessed constant. Not tenant-owned: it describes the
    machines, and holds no tenant's data."""

    provider = models.CharField(max_length=64)
    modality = models.CharField(max_length=32)
    unit = models.CharField(max_length=32)
    seconds_per_unit = models.FloatField()
    samples = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "modality"], name="throughput_one_per"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.modality}: {self.seconds_per_unit:.3g} s/{self.unit}"


class StorageUsage(TenantOwnedModel):
    """Bytes of artifacts a tenant keeps stored, counted as they are inserted: an upload is
    admitted by one conditional UPDATE that keeps the total within the policy's
    `max_storage_bytes` (services/artifacts.py), so concurrent uploads cannot pass it."""

    stored_bytes = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "storage usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="mmstorage_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.stored_bytes} bytes"


class DailySpend(TenantOwnedModel):
    """A tenant's multimodal spend on one UTC day, in nano-dollars: `settled` is what
    finished requests cost, `reserved` the estimates of requests still running. A request is
    admitted only by one conditional UPDATE that keeps reserved + settled within the limit
    (services/spend.py)."""

    day = models.DateField()
    reserved_nano_usd = models.BigIntegerField(default=0)
    settled_nano_usd = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "daily spend"
        verbose_name_plural = "daily spend"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day"], name="mmspend_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"


class ProviderPrice(models.Model):
    """The platform's price of one provider's model: USD per unit of usage, as decimal
    strings (`{"characters": "0.000015"}`). Not tenant-owned: operators set it (an
    all-tenants token, or staff in the admin). `version` counts changes, so a result can
    name the exact price it was costed with."""

    id = PrefixedIdField(prefix="price")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=100)
    usd_per_unit = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "provider price"
        ordering = ["provider", "model"]
        indexes = [models.Index(fields=["updated_at", "id"], name="mmprice_updated")]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="mmprice_one_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    def reference(self) -> dict:
        """What a result records of the price it was costed with."""
        return {
            "provider": self.provider,
            "model": self.model,
            "usd_per_unit": dict(self.usd_per_unit),
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }


class CloudProvider(models.TextChoices):
    """Providers a tenant can store a key for (the offline engines need none)."""

    OPENAI = "openai", "OpenAI"
    ELEVENLABS = "elevenlabs", "ElevenLabs"
    OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible"


MAX_BASE_URL = 500


def validate_base_url(value: str) -> None:
    """An absolute http(s) URL with a host and nothing the engines would mangle or leak: no
    user:password@ (credentials belong in the encrypted key, not in a plain column that
    admins and GET responses show), no query or fragment (engines append API paths), and a
    host the server may call (multimodal/network.py: no private addresses unless allowed)."""
    if not value:
        return
    if len(value) > MAX_BASE_URL:
        raise ValidationError(f"base_url is longer than {MAX_BASE_URL} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationError("base_url must not contain whitespace or control characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValidationError("base_url is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("base_url must start with http:// or https://.")
    if "@" in parts.netloc:
        raise ValidationError(
            "base_url must not contain credentials (user:password@); send the key as api_key."
        )
    if not parts.hostname:
        raise ValidationError("base_url must name a host.")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValidationError("base_url must not have a query string or fragment.")
    refused = refusal(value, allowed_networks())
    if refused is not None:
        raise ValidationError(refused, code="base_url_not_allowed")


class ProviderCredential(TenantOwnedModel):
    """A tenant's own API key for one cloud provider, encrypted at rest (`encryption`).

    The plaintext is never stored, logged, returned or shown: only the Fernet token and the
    last four characters (so people can tell keys apart) are kept. `base_url` is set only by
    operators and staff; see the API view."""

    id = PrefixedIdField(prefix="mmcred")
    provider = models.CharField(max_length=32, choices=CloudProvider.choices)
    api_key_encrypted = models.TextField(editable=False)
    key_last4 = models.CharField(max_length=4, editable=False)
    base_url = models.CharField(
        max_length=MAX_BASE_URL, blank=True, validators=[validate_base_url],
        help_text="Empty: the platform's base URL for this provider, else the provider's "
        "public API.",
    )
    default_model = models.CharField(
        max_length=100, blank=True, help_text="Empty: the engine's default model per modality."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True, editable=False)

    class Meta:
        verbose_name = "provider credential"
        # The unique constraint's index leads with tenant and serves every lookup
        # (a tenant's keys; one tenant's key for one provider).
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider"], name="mmcred_one_per_provider"),
            models.CheckConstraint(
                condition=Q(provider__in=CloudProvider.values), name="mmcred_provider_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} key …{self.key_last4} ({self.tenant_id})"

    def set_api_key(self, plaintext: str) -> None:
        self.api_key_encrypted = encryption.encrypt(plaintext)
        self.key_last4 = plaintext[-4:]

    def api_key(self) -> str:
        """The plaintext, for the engine call only. Raises encryption.UndecryptableKey."""
        return encryption.decrypt(self.api_key_encrypted)
