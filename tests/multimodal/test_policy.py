"""Per-tenant policy: defaults until set, validated updates, own tenant only."""

from __future__ import annotations

import pytest

from agent33.auth.scopes import MULTIMODAL_ADMIN, MULTIMODAL_READ
from multimodal.models import MultimodalPolicy

pytestmark = pytest.mark.django_db

DEFAULTS = {
    "max_text_chars": 5000,
    "max_artifact_bytes": 5_000_000,
    "max_timeout_seconds": 300,
    "allowed_modalities": ["speech_to_text", "text_to_speech", "vision_analysis"],
    "daily_spend_limit_usd": None,
    "max_storage_bytes": 1 << 30,
}


def url(tenant_id: str) -> str:
    return f"/v1/multimodal/tenants/{tenant_id}/policy"


def test_defaults_until_set(api_client_for, tenant_a):
    reader = api_client_for(tenant_a, scopes=[MULTIMODAL_READ])
    response = reader.get(url(tenant_a.slug))
    assert response.status_code == 200
    assert response.json() == {"tenant_id": tenant_a.slug, **DEFAULTS, "updated_at": None}
    assert not MultimodalPolicy.all_tenants.exists()  # reading creates nothing


def test_admin_sets_part_of_the_policy(api_client_for, tenant_a):
    admin = api_client_for(tenant_a, scopes=[MULTIMODAL_ADMIN, MULTIMODAL_READ])
    response = admin.post(url(tenant_a.slug), {"max_text_chars": 100,
                                               "allowed_modalities": ["text_to_speech"]},
                          format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["max_text_chars"] == 100
    assert body["allowed_modalities"] == ["text_to_speech"]
    assert body["max_timeout_seconds"] == 300  # untouched fields keep their value
    assert body["updated_at"] is not None
    again = admin.post(url(tenant_a.slug), {"max_timeout_seconds": 30}, format="json").json()
    assert again["max_text_chars"] == 100 and again["max_timeout_seconds"] == 30
    assert admin.get(url(tenant_a.slug)).json() == again
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    assert policy.updated_by.startswith("token:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_text_chars": 0}, "max_text_chars"),
        ({"max_text_chars": -5}, "max_text_chars"),
        ({"max_text_chars": 10**9}, "max_text_chars"),
        ({"max_artifact_bytes": 10**12}, "max_artifact_bytes"),
        ({"max_timeout_seconds": 0}, "max_timeout_seconds"),
        ({"max_timeout_seconds": 86400}, "max_timeout_seconds"),
        ({"max_timeout_seconds": "long"}, "max_timeout_seconds"),
        ({"allowed_modalities": ["telepathy"]}, "allowed_modalities"),
        ({"allowed_modalities": [3]}, "allowed_modalities"),
        ({"allowed_modalities": "text_to_speech"}, "allowed_modalities"),
        ({"allowed_modalities": ["text_to_speech", "text_to_speech"]}, "allowed_modalities"),
        ({}, "non_field_errors"),
    ],
)
def test_invalid_values_are_400s_naming_the_field(client_a, tenant_a, body, field):
    response = client_a.post(url(tenant_a.slug), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not MultimodalPolicy.all_tenants.exists()


def test_empty_modalities_switch_the_app_off(client_a, tenant_a):
    response = client_a.post(url(tenant_a.slug), {"allowed_modalities": []}, format="json")
    assert response.status_code == 200
    create = client_a.post("/v1/multimodal/requests",
                           {"modality": "text_to_speech", "input_text": "x"}, format="json")
    assert create.status_code == 400
    assert create.json()["code"] == "modality_not_allowed"


def test_other_tenant_is_404_for_reads_and_writes(client_a, tenant_b):
    assert client_a.get(url(tenant_b.slug)).status_code == 404
    response = client_a.post(url(tenant_b.slug), {"max_text_chars": 1}, format="json")
    assert response.status_code == 404
    assert not MultimodalPolicy.all_tenants.exists()
    assert client_a.get(url("no-such-tenant")).status_code == 404


def test_operator_reads_and_sets_any_tenant(api_client_for, tenant_b):
    operator = api_client_for(None, scopes=[MULTIMODAL_ADMIN, MULTIMODAL_READ])
    assert operator.get(url(tenant_b.slug)).json()["tenant_id"] == tenant_b.slug
    response = operator.post(url(tenant_b.slug), {"max_text_chars": 42}, format="json")
    assert response.status_code == 200
    assert MultimodalPolicy.all_tenants.get(tenant=tenant_b).max_text_chars == 42
    assert operator.get(url("no-such-tenant")).status_code == 404


def test_write_scope_cannot_set_policy(api_client_for, tenant_a):
    """A tenant must not raise its own guardrails with a plain write token."""
    client = api_client_for(tenant_a, scopes=["multimodal:read", "multimodal:write"])
    response = client.post(f"/v1/multimodal/tenants/{tenant_a.slug}/policy",
                           {"max_text_chars": 99999}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Missing required scope: multimodal:admin"
    assert not MultimodalPolicy.all_tenants.filter(tenant=tenant_a).exists()
