from __future__ import annotations

import pytest

from agent33.tenancy.context import tenant_scope
from bench.receivers import Receiver
from webhooks.choices import EventType
from webhooks.services import endpoint_create

ALL_TYPES = list(EventType.values)


TEST_SECRET_KEY = "b3JkaW5hcnktdGVzdC1mZXJuZXQta2V5LTMyLWJ5dGU="  # 32 bytes, url-safe b64


@pytest.fixture(autouse=True)
def _secrets_encryptable(settings):
    settings.AGENT33_SECRET_KEYS = [TEST_SECRET_KEY]


@pytest.fixture(autouse=True)
def _receivers_on_loopback_allowed(settings):
    """Receivers run on 127.0.0.1, which the outbound rules refuse unless allowed: only
    that address (the SSRF tests clear both setting names)."""
    settings.AGENT33_OUTBOUND_PRIVATE_NETWORKS = "127.0.0.1/32"
    settings.AGENT33_PROVIDER_PRIVATE_NETWORKS = ""
    settings.AGENT33_WEBHOOK_RETRY_SCHEDULE = ""


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def endpoint_for(db):
    def build(tenant, url, event_types=None, description=""):
        with tenant_scope(tenant):
            return endpoint_create(tenant=tenant, url=url,
                                   event_types=event_types or ALL_TYPES,
                                   description=description)

    return build
