"""Every multimodal route and action through the shared tenancy/auth matrix."""

from __future__ import annotations

import pytest

from agent33.auth.scopes import MULTIMODAL_ADMIN, MULTIMODAL_READ, MULTIMODAL_WRITE
from multimodal.models import Artifact, MultimodalPolicy, MultimodalRequest
from tests.api_matrix import Endpoint, Resource, run_api_matrix
from tests.factories.multimodal import (
    ArtifactFactory,
    MultimodalRequestFactory,
    MultimodalResultFactory,
    wav_bytes,
)

pytestmark = pytest.mark.django_db

BASE = "/v1/multimodal"


def request_snapshot(request_id: str):
    return MultimodalRequest.all_tenants.filter(pk=request_id).values().get()


def test_requests_matrix(api_client_for, tenant_a, tenant_b):
    def make(tenant) -> str:
        # A result exists so the result route has something to hide from other tenants.
        return MultimodalResultFactory(tenant=tenant).request_id

    pending = {}

    def make_pending(tenant) -> str:
        pending[tenant.pk] = MultimodalRequestFactory(tenant=tenant).pk
        return pending[tenant.pk]

    run_api_matrix(
        Resource(
            endpoints=[
                Endpoint("GET", f"{BASE}/requests/{{id}}", MULTIMODAL_READ),
                Endpoint("GET", f"{BASE}/requests/{{id}}/result", MULTIMODAL_READ),
                Endpoint("GET", f"{BASE}/requests", MULTIMODAL_READ),
                Endpoint("POST", f"{BASE}/requests", MULTIMODAL_WRITE,
                         body={"modality": "text_to_speech", "input_text": "hi",
                               "execute_now": False}),
            ],
            make_object=make,
            snapshot=request_snapshot,
            list_path=f"{BASE}/requests",
            list_scope=MULTIMODAL_READ,
            create_path=f"{BASE}/requests",
            create_scope=MULTIMODAL_WRITE,
            create_body={"modality": "text_to_speech", "input_text": "hi", "execute_now": False},
            owner_of=lambda pk: MultimodalRequest.all_tenants.get(pk=pk).tenant_id,
        ),
        api_client_for=api_client_for,
        tenant_a=tenant_a,
        tenant_b=tenant_b,
    )
    # The state-changing actions on a pending request (so a leak would visibly change it).
    run_api_matrix(
        Resource(
            endpoints=[
                Endpoint("POST", f"{BASE}/requests/{{id}}/execute", MULTIMODAL_WRITE),
                Endpoint("POST", f"{BASE}/requests/{{id}}/cancel", MULTIMODAL_WRITE,
                         body={"reason": "matrix"}),
            ],
            make_object=make_pending,
            snapshot=request_snapshot,
        ),
        api_client_for=api_client_for,
        tenant_a=tenant_a,
        tenant_b=tenant_b,
    )


def test_artifacts_matrix(api_client_for, tenant_a, tenant_b):
    run_api_matrix(
        Resource(
            endpoints=[
                Endpoint("GET", f"{BASE}/artifacts/{{id}}", MULTIMODAL_READ),
                Endpoint("GET", f"{BASE}/artifacts/{{id}}/content", MULTIMODAL_READ),
                Endpoint("POST", f"{BASE}/artifacts", MULTIMODAL_WRITE, multipart=True,
                         body=lambda: {"file": _upload()}),
            ],
            make_object=lambda tenant: ArtifactFactory(tenant=tenant).pk,
            snapshot=lambda pk: Artifact.all_tenants.filter(pk=pk).values().get(),
            create_path=f"{BASE}/artifacts",
            create_scope=MULTIMODAL_WRITE,
            create_body={"file": _upload()},
            create_multipart=True,
            owner_of=lambda pk: Artifact.all_tenants.get(pk=pk).tenant_id,
        ),
        api_client_for=api_client_for,
        tenant_a=tenant_a,
        tenant_b=tenant_b,
    )


def _upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("speech.wav", wav_bytes(), content_type="text/plain")


def test_policy_matrix(api_client_for, tenant_a, tenant_b):
    def snapshot(slug: str):
        return list(MultimodalPolicy.all_tenants.filter(tenant_id=slug).values())

    run_api_matrix(
        Resource(
            endpoints=[
                Endpoint("GET", f"{BASE}/tenants/{{id}}/policy", MULTIMODAL_READ),
                Endpoint("POST", f"{BASE}/tenants/{{id}}/policy", MULTIMODAL_ADMIN,
                         body={"max_text_chars": 10}),
            ],
            make_object=lambda tenant: tenant.slug,
            snapshot=snapshot,
        ),
        api_client_for=api_client_for,
        tenant_a=tenant_a,
        tenant_b=tenant_b,
    )


def test_stats_matrix(api_client_for, tenant_a, tenant_b):
    run_api_matrix(
        Resource(
            endpoints=[Endpoint("GET", f"{BASE}/stats", MULTIMODAL_READ)],
            make_object=lambda tenant: tenant.slug,
        ),
        api_client_for=api_client_for,
        tenant_a=tenant_a,
        tenant_b=tenant_b,
    )


def test_write_scope_cannot_set_policy(api_client_for, tenant_a):
    client = api_client_for(tenant_a, scopes=[MULTIMODAL_READ, MULTIMODAL_WRITE])
    response = client.post(f"{BASE}/tenants/{tenant_a.slug}/policy", {"max_text_chars": 99999},
                           format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Missing required scope: multimodal:admin"
    assert not MultimodalPolicy.all_tenants.filter(tenant=tenant_a).exists()
