from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks (alerts)"

    def ready(self) -> None:
        from django.core import checks

        from agent33.observability.metrics import register_collector
        from operations.hub import register_attention_item

        from . import events, metrics
        from .selectors import auto_disabled_item

        # Alerts come from the other apps' signals; none of them imports this one.
        events.connect()
        register_attention_item(auto_disabled_item())
        register_collector("webhooks", metrics.collect)
        checks.register(check_retry_schedule, checks.Tags.compatibility)


def check_retry_schedule(app_configs=None, **kwargs):
    """A malformed AGENT33_WEBHOOK_RETRY_SCHEDULE is an error at start-up, not a silent
    fallback to the default at the first failed delivery."""
    from django.conf import settings
    from django.core import checks

    raw = str(getattr(settings, "AGENT33_WEBHOOK_RETRY_SCHEDULE", "") or "").strip()
    if not raw:
        return []
    try:
        values = [float(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        values = [-1.0]
    if not values or any(value < 0 or value != value for value in values):
        return [checks.Error(
            "AGENT33_WEBHOOK_RETRY_SCHEDULE must be seconds, comma-separated, each >= 0.",
            hint="e.g. 5,300,1800,7200,18000,36000,86400 (the default when unset)",
            id="webhooks.E001")]
    return []
