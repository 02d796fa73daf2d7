from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    name = "outcomes"

    def ready(self) -> None:
        from agent33.observability.metrics import register_collector

        from . import limits, metrics  # limits registers its start-up check

        register_collector("outcomes", metrics.collect)
        del limits
