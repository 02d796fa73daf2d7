"""Providers by name. Engines register themselves when their module is imported;
`multimodal.apps` imports the built-in ones at start-up."""

from __future__ import annotations

from .base import Provider, ProviderError

__all__ = ["get_provider", "provider_names", "register_provider", "unregister_provider"]

_PROVIDERS: dict[str, Provider] = {}


def register_provider(provider: Provider) -> Provider:
    _PROVIDERS[provider.name] = provider
    return provider


def unregister_provider(name: str) -> None:
    _PROVIDERS.pop(name, None)


def get_provider(name: str) -> Provider:
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ProviderError(name, "unknown provider") from None


def provider_names() -> list[str]:
    return sorted(_PROVIDERS)
