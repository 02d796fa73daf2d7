from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        # The hub lists whatever sources are registered; other apps (multimodal) register
        # theirs from their own ready(), so operations never imports them.
        from .sources import register_builtin_attention_items, register_builtin_sources

        register_builtin_sources()
        register_builtin_attention_items()
