"""Which provider serves a request, and with which credentials.

Two functions, the only places these decisions are made:

- `resolve_provider(tenant, modality, requested)` at creation: the requested provider, else
  the tenant's default, else the platform's, else the offline engine for the modality.
- `provider_call_for(request, timeout_seconds)` at execution: the `ProviderCall` (deadline,
  model, key, base URL) for the request's provider.

Stored per-tenant keys (ProviderCredential, the cloud-provider issue) plug in at
`tenant_default_provider()` and `credentials_for()`; nothing else needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from agent33.errors import InvalidInput
from agent33.tenancy.models import Tenant

from .choices import OFFLINE_PROVIDERS
from .providers.base import MODALITY_VISION, ProviderCall, ProviderError
from .providers.registry import get_provider, provider_names

__all__ = [
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
    default_model: str = ""


# Platform keys from the environment (DESIGN §3): provider → (key setting, base URL setting).
_PLATFORM_KEY_SETTINGS = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "openai-compatible": ("OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_BASE_URL"),
    "elevenlabs": ("ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL"),
}


def tenant_default_provider(tenant: Tenant, modality: str) -> str:
    """The tenant's own choice for a modality; "" when it has none. (Per-tenant provider
    settings arrive with stored provider keys; until then tenants have no default.)"""
    return ""


def platform_default_provider(modality: str) -> str:
    """`MULTIMODAL_DEFAULT_PROVIDERS = {"text_to_speech": "openai", ...}` in settings."""
    defaults = getattr(settings, "MULTIMODAL_DEFAULT_PROVIDERS", None) or {}
    return str(defaults.get(modality, ""))


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


def resolve_provider(tenant: Tenant, modality: str, requested: str = "") -> str:
    """The provider name for a new request. Raises InvalidInput (400, field `provider`) for
    an unknown provider or one that cannot do the modality; never falls back silently from
    an explicit choice."""
    if requested:
        return _check(requested, modality, source="requested")
    tenant_choice = tenant_default_provider(tenant, modality)
    if tenant_choice:
        return _check(tenant_choice, modality, source="tenant default")
    platform_choice = platform_default_provider(modality)
    if platform_choice:
        return _check(platform_choice, modality, source="platform default")
    return OFFLINE_PROVIDERS[modality]


def credentials_for(tenant: Tenant | str, provider: str) -> ProviderCredentials:
    """Key, base URL and default model for `provider` on behalf of `tenant`: for now the
    platform's keys from the environment; offline engines need none."""
    names = _PLATFORM_KEY_SETTINGS.get(provider)
    if names is None:
        return ProviderCredentials()
    key_setting, url_setting = names
    return ProviderCredentials(
        api_key=getattr(settings, key_setting, "") or "",
        base_url=getattr(settings, url_setting, "") or "",
    )


def provider_call_for(request, timeout_seconds: float) -> ProviderCall:
    """The engine call for a request, ending `timeout_seconds` from now."""
    credentials = credentials_for(request.tenant_id, request.provider)
    options = {}
    if request.modality == MODALITY_VISION and request.input_text:
        # Text sent with an image is the question about it (engines that take a prompt).
        options["prompt"] = request.input_text
    return ProviderCall.with_timeout(
        max(timeout_seconds, 0.0),
        model=credentials.default_model,
        api_key=credentials.api_key,
        base_url=credentials.base_url,
        options=options,
    )
