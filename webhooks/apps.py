from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks (alerts)"

    def ready(self) -> None:
        from agent33.observability.metrics import register_collector
        from operations.hub import register_attention_item

        from . import events, metrics
        from .selectors import auto_disabled_item

        # Alerts come from the other apps' signals; none of them imports this one.
        events.connect()
        register_attention_item(auto_disabled_item())
        register_collector("webhooks", metrics.collect)
