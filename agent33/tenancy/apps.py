from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "agent33.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy and API tokens"
