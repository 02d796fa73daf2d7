from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class MultimodalConfig(AppConfig):
    name = "multimodal"

    def ready(self) -> None:
        from .providers import load_builtin_providers

        load_builtin_providers()
        # Extra engines (a deployment's own, or a test-only one in worker processes) are
        # modules that register a provider when imported.
        for module in getattr(settings, "MULTIMODAL_PROVIDER_MODULES", ()):
            import_module(module)
