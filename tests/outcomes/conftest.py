from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent33.auth.scopes import OUTCOMES_READ, OUTCOMES_WRITE

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event_body(**overrides) -> dict:
    body = {
        "domain": "support",
        "event_type": "task_completed",
        "metric_type": "success_rate",
        "value": 0.5,
    }
    body.update(overrides)
    return body


@pytest.fixture
def outcomes_a(api_client_for, tenant_a):
    """Tenant A's client with outcomes:read and outcomes:write."""
    return api_client_for(tenant_a, scopes=[OUTCOMES_READ, OUTCOMES_WRITE])


@pytest.fixture
def outcomes_b(api_client_for, tenant_b):
    return api_client_for(tenant_b, scopes=[OUTCOMES_READ, OUTCOMES_WRITE])
