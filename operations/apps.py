from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from agent33.observability.metrics import register_collector
        from agent33.observability.row_counts import register_row_counter

        from . import metrics
        from .services import register_operations_kinds
        from .sources import register_builtin_attention_items, register_builtin_sources

        # The hub lists whatever sources are registered; other apps (multimodal) register
        # theirs from their own ready(), so operations never imports them.
        register_operations_kinds()
        register_builtin_sources()
        register_builtin_attention_items()
        for counter in metrics.ROW_COUNTERS:
            register_row_counter(counter)
        register_collector("operations", metrics.collect)
