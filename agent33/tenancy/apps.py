from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "agent33.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy and API tokens"

    def ready(self) -> None:
        # Registers the bearer scheme with drf-spectacular (an import side effect by design).
        from agent33.api import schema  # noqa: F401

        # Connects the auth generation to token and tenant changes, and registers its check;
        # the trusted-proxy setting's check.
        from agent33.auth import proxies, revocation  # noqa: F401
