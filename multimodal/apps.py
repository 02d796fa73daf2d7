from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class MultimodalConfig(AppConfig):
    name = "multimodal"

    def ready(self) -> None:
        from agent33.observability.metrics import register_collector
        from agent33.observability.row_counts import register_row_counter
        from operations.hub import (
            register_attention_item,
            register_hub_panel,
            register_process_source,
        )
        from operations.transitions import register_process_kind

        from . import metrics
        from .hub_source import (
            MultimodalRequestSource,
            recently_failed_item,
            render_stats_panel,
        )
        from .providers import load_builtin_providers
        from .services.requests import REQUEST_KIND

        load_builtin_providers()
        # The Operations Hub lists and cancels requests, and shows their health, through
        # these; operations itself never imports this app.
        register_process_kind(REQUEST_KIND)
        register_process_source(MultimodalRequestSource())
        register_hub_panel("multimodal", render_stats_panel)
        register_attention_item(recently_failed_item())
        register_row_counter(metrics.ROW_COUNTER)
        register_collector("multimodal", metrics.collect)
        # Extra engines (a deployment's own, or a test-only one in worker processes) are
        # modules that register a provider when imported.
        for module in getattr(settings, "MULTIMODAL_PROVIDER_MODULES", ()):
            import_module(module)
