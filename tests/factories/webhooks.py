import json

import factory

from multimodal import encryption
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.signing import new_secret

from .tenancy import TenantOwnedFactory


class WebhookEndpointFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookEndpoint

    url = "http://127.0.0.1:9/hook"
    event_types = factory.LazyFunction(lambda: ["intake.opened"])
    secret_encrypted = factory.LazyFunction(lambda: encryption.encrypt(new_secret()))


class WebhookDeliveryFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory, tenant=factory.SelfAttribute("..tenant"))
    event_type = "intake.opened"
    body = factory.LazyFunction(lambda: json.dumps(
        {"type": "intake.opened", "timestamp": "2026-12-01T00:00:00Z", "data": {}}))
    state = "delivered"
    attempt_count = 1


class WebhookAttemptFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookAttempt

    delivery = factory.SubFactory(WebhookDeliveryFactory, tenant=factory.SelfAttribute("..tenant"))
    status_code = 200
    duration_ms = 12
