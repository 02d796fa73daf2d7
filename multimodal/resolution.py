"""Which provider serves a request, and with which credentials.

Two functions, the only places these decisions are made:

- `resolve_provider(tenant, modality, requested)` at creation: the requested provider, else
  the tenant's default, else the platform's, else the offline engine for the modality. A
  cloud provider chosen by any of these must have a key (the tenant's or the platform's),
  and `openai-compatible` a base URL, or the request is refused with 400
  `provider_not_configured`: never a silent switch to another engine.
- `provider_call_for(mm_request, timeout_seconds)` at execution: the `ProviderCall`
  (deadline, model, key, base URL) for the request's provider.

Both read the tenant's stored credentials and policy through the tenant-scoped managers, in
the caller's scope (the API's token at creation, the task's scope at execution).

Definitions (README "Providers"):

- The tenant's default for a modality is the first provider in `PROVIDER_PREFERENCE` for
  which the tenant has stored a key and that supports the modality: a tenant that brings an
  OpenAI key gets OpenAI for everything, one that also brings an ElevenLabs key gets
  ElevenLabs for speech synthesis. A request can always name another provider.
- The platform's default for a modality is `MULTIMODAL_DEFAULT_PROVIDERS[modality]` when
  set (it may name an offline engine, to keep cloud keys opt-in per request), else the first
  provider in `PROVIDER_PREFERENCE` with a platform key in the environment (and, for
  `openai-compatible`, a platform base URL) that supports the modality.
- Credentials: the tenant's stored key when it has one (with its base URL and default model;
  an empty base URL falls back to the platform's, then the provider's public API), else the
  platform key from the environment. A stored key that cannot be decrypted fails the
  request; it never falls back to the platform key.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from agent33.errors import InvalidInput
from agent33.tenancy.models import Tenant

from . import encryption
from .choices import OFFLINE_PROVIDERS
from .models import POLICY_DEFAULTS, MultimodalPolicy, MultimodalRequest, ProviderCredential
from .network import allowed_networks
from .provider_keys import model_for
from .providers.base import MODALITY_VISION, ProviderCall, ProviderError
from .providers.registry import get_provider, provider_names

__all__ = [
    "PROVIDER_PREFERENCE",
    "ProviderCredentials",
    "credentials_for",
    "platform_default_provider",
    "provider_call_for",
    "resolve_provider",
    "tenant_default_provider",
]


@dataclass(frozen=True)
class ProviderCredentials:
    api_key: str = ""
    base_url: str = ""
    default_model: str = ""  # a stored credential's value, see provider_keys.model_for


# Platform keys from the environment (DESIGN §3): provider → (key setting, base URL setting).
_PLATFORM_KEY_SETTINGS = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "openai-compatible": ("OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_BASE_URL"),
    "elevenlabs": ("ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL"),
}
# Providers without a public default endpoint: a base URL must be configured somewhere.
_NEEDS_BASE_URL = frozenset({"openai-compatible"})

# Which cloud provider is the default when several are configured: the specialist first
# (ElevenLabs does speech synthesis only), then OpenAI's own API, then a generic endpoint.
PROVIDER_PREFERENCE: tuple[str, ...] = ("elevenlabs", "openai", "openai-compatible")


def _platform_key(provider: str) -> str:
    return getattr(settings, _PLATFORM_KEY_SETTINGS[provider][0], "") or ""


def _platform_base_url(provider: str) -> str:
    return getattr(settings, _PLATFORM_KEY_SETTINGS[provider][1], "") or ""


def _supports(name: str, modality: str) -> bool:
    try:
        return modality in get_provider(name).modalities
    except ProviderError:
        return False


def _stored(tenant: Tenant) -> dict[str, str]:
    """The tenant's stored providers → their base URL (one query, no decryption)."""
    return dict(
        ProviderCredential.objects.filter(tenant=tenant).values_list("provider", "base_url")
    )


def tenant_default_provider(
    tenant: Tenant, modality: str, *, stored: dict[str, str] | None = None
) -> str:
    """The tenant's own choice for a modality ("" when it has none): the first provider in
    PROVIDER_PREFERENCE it stored a key for that supports the modality."""
    stored = _stored(tenant) if stored is None else stored
    for name in PROVIDER_PREFERENCE:
        if name in stored and _supports(name, modality):
            return name
    return ""


def platform_default_provider(modality: str) -> str:
    """`MULTIMODAL_DEFAULT_PROVIDERS = {"text_to_speech": "openai", ...}` in settings; else
    the first provider in PROVIDER_PREFERENCE the environment holds a key for."""
    defaults = getattr(settings, "MULTIMODAL_DEFAULT_PROVIDERS", None) or {}
    explicit = str(defaults.get(modality, ""))
    if explicit:
        return explicit
    for name in PROVIDER_PREFERENCE:
        if not _platform_key(name) or not _supports(name, modality):
            continue
        if name in _NEEDS_BASE_URL and not _platform_base_url(name):
            continue
        return name
    return ""


def _check(name: str, modality: str, *, source: str) -> str:
    try:
        provider = get_provider(name)
    except ProviderError:
        raise InvalidInput(
            f"Unknown provider {name!r} ({source}); known: {', '.join(provider_names())}.",
            code="unknown_provider",
            field="provider",
        ) from None
    if modality not in provider.modalities:
        raise InvalidInput(
            f"Provider {name!r} ({source}) does not support {modality}.",
            code="provider_unsupported_modality",
            field="provider",
        )
    return name


def _require_configured(
    tenant: Tenant, name: str, *, source: str, stored: dict[str, str] | None
) -> None:
    """A cloud provider needs a key (and openai-compatible a base URL) before a request is
    accepted for it: refusing now is clearer than a request that can only fail."""
    if name not in _PLATFORM_KEY_SETTINGS:
        return  # offline engines need nothing
    stored = _stored(tenant) if stored is None else stored
    key_setting, url_setting = _PLATFORM_KEY_SETTINGS[name]
    keys_url = f"/v1/multimodal/tenants/{tenant.pk}/providers/{name}"
    if name not in stored and not _platform_key(name):
        raise InvalidInput(
            f"Provider {name!r} ({source}) has no API key: a tenant admin stores one with "
            f"PUT {keys_url}, or the platform sets {key_setting}.",
            code="provider_not_configured",
            field="provider",
        )
    if name in _NEEDS_BASE_URL and not stored.get(name) and not _platform_base_url(name):
        raise InvalidInput(
            f"Provider {name!r} ({source}) has no base_url: an operator sets one with "
            f"PUT {keys_url} (operator token or the admin), or the platform sets {url_setting}.",
            code="provider_not_configured",
            field="provider",
        )


def resolve_provider(tenant: Tenant, modality: str, requested: str = "") -> str:
    """The provider name for a new request. Raises InvalidInput (400, field `provider`) for
    an unknown provider, one that cannot do the modality, or a cloud provider with no key;
    never falls back silently from an explicit choice. At most one query (the tenant's
    stored providers), none for a requested offline engine."""
    if requested:
        name = _check(requested, modality, source="requested")
        _require_configured(tenant, name, source="requested", stored=None)
        return name
    stored = _stored(tenant)
    tenant_choice = tenant_default_provider(tenant, modality, stored=stored)
    if tenant_choice:
        name = _check(tenant_choice, modality, source="tenant default")
        _require_configured(tenant, name, source="tenant default", stored=stored)
        return name
    platform_choice = platform_default_provider(modality)
    if platform_choice:
        name = _check(platform_choice, modality, source="platform default")
        _require_configured(tenant, name, source="platform default", stored=stored)
        return name
    return OFFLINE_PROVIDERS[modality]


def credentials_for(tenant: Tenant | str, provider: str) -> ProviderCredentials:
    """Key, base URL and default model for `provider` on behalf of `tenant`: the tenant's
    stored credential, else the platform's key from the environment; offline engines need
    none (and cost no query). Raises ProviderError (which fails the request, naming the
    provider) when the tenant's stored key cannot be decrypted: using the platform's key
    instead would bill the wrong account."""
    if provider not in _PLATFORM_KEY_SETTINGS:
        return ProviderCredentials()
    tenant_id = tenant if isinstance(tenant, str) else tenant.pk
    stored = ProviderCredential.objects.filter(tenant_id=tenant_id, provider=provider).first()
    if stored is None:
        return ProviderCredentials(
            api_key=_platform_key(provider), base_url=_platform_base_url(provider)
        )
    try:
        api_key = stored.api_key()
    except encryption.EncryptionUnavailable as exc:
        raise ProviderError(
            provider, f"the tenant's stored key cannot be read: {exc.detail}"
        ) from None
    except encryption.UndecryptableKey:
        raise ProviderError(
            provider,
            f"the tenant's stored key cannot be decrypted with {encryption.SETTING} (the key "
            "it was encrypted with was removed before rotate_provider_keys ran?); store the "
            "key again",
        ) from None
    return ProviderCredentials(
        api_key=api_key,
        base_url=stored.base_url or _platform_base_url(provider),
        default_model=stored.default_model,
    )


def _policy_timeout_cap(tenant_id: str) -> float:
    cap = (
        MultimodalPolicy.objects.filter(tenant_id=tenant_id)
        .values_list("max_timeout_seconds", flat=True)
        .first()
    )
    return float(cap if cap is not None else POLICY_DEFAULTS["max_timeout_seconds"])


def provider_call_for(
    mm_request: MultimodalRequest, timeout_seconds: float, *,
    policy_cap_seconds: float | None = None,
) -> ProviderCall:
    """The engine call for a request: it ends `timeout_seconds` from now (the time left
    before the request's deadline), and never later than the tenant's current policy allows
    (a policy lowered after the request was accepted still binds its execution).
    `policy_cap_seconds`: that cap when the caller read it already; read here otherwise."""
    credentials = credentials_for(mm_request.tenant_id, mm_request.provider)
    if policy_cap_seconds is None:
        policy_cap_seconds = _policy_timeout_cap(mm_request.tenant_id)
    seconds = min(max(timeout_seconds, 0.0), policy_cap_seconds)
    options = {}
    if mm_request.modality == MODALITY_VISION and mm_request.input_text:
        # Text sent with an image is the question about it (engines that take a prompt).
        options["prompt"] = mm_request.input_text
    return ProviderCall.with_timeout(
        seconds,
        model=model_for(credentials.default_model, mm_request.modality),
        api_key=credentials.api_key,
        base_url=credentials.base_url,
        options=options,
        allowed_networks=allowed_networks(),
    )
