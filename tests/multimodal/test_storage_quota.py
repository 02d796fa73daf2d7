"""A tenant's artifact storage quota (DESIGN §8.2): operator-set, 1 GiB by default; an upload
or inline input that would pass it is a 413 naming usage and quota, and stores nothing."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from django.db import connection

from multimodal.models import Artifact, StorageUsage
from tests.factories.multimodal import png_bytes, wav_bytes
from tests.multimodal.test_api_artifacts import URL, upload

pytestmark = pytest.mark.django_db

POLICY = "/v1/multimodal/tenants/{}/policy"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def stored(tenant) -> int:
    return StorageUsage.all_tenants.filter(tenant=tenant).values_list(
        "stored_bytes", flat=True).first() or 0


def set_quota(operator_client, tenant, quota: int) -> None:
    response = operator_client.post(POLICY.format(tenant.slug), {"max_storage_bytes": quota},
                                    format="json")
    assert response.status_code == 200, response.content
    assert response.json()["max_storage_bytes"] == quota


def test_uploads_past_the_quota_are_413_and_store_nothing(client_a, operator_client,
                                                         tenant_a, media_root):
    data = wav_bytes()
    set_quota(operator_client, tenant_a, 2 * len(data) + 10)
    for _ in range(2):
        assert upload(client_a, data).status_code == 201
    refused = upload(client_a, data)
    assert refused.status_code == 413
    assert refused.json() == {
        "detail": f"file: storing these {len(data)} bytes would pass tenant {tenant_a.slug}'s "
                  f"artifact storage quota: {2 * len(data)} of {2 * len(data) + 10} bytes are "
                  "in use. An operator can raise max_storage_bytes in the tenant's policy.",
        "code": "storage_quota_exceeded",
        "errors": {"file": [refused.json()["detail"]]},
    }
    assert Artifact.all_tenants.filter(tenant=tenant_a).count() == 2
    assert len(files_under(media_root)) == 2  # the refused file was removed
    assert stored(tenant_a) == 2 * len(data)


def test_the_default_quota_is_one_gibibyte_and_only_operators_raise_it(
    client_a, operator_client, tenant_a
):
    policy = client_a.get(POLICY.format(tenant_a.slug)).json()
    assert policy["max_storage_bytes"] == 1 << 30
    response = client_a.post(POLICY.format(tenant_a.slug), {"max_storage_bytes": 1 << 40},
                             format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "storage_quota_operator_only"
    assert client_a.get(POLICY.format(tenant_a.slug)).json()["max_storage_bytes"] == 1 << 30
    # A tenant may hold itself tighter; an operator loosens it again.
    lowered = client_a.post(POLICY.format(tenant_a.slug), {"max_storage_bytes": 1 << 20},
                            format="json")
    assert lowered.status_code == 200 and lowered.json()["max_storage_bytes"] == 1 << 20
    set_quota(operator_client, tenant_a, 1 << 31)


def test_inline_inputs_count_and_a_refused_request_leaves_no_file(client_a, operator_client,
                                                                  tenant_a, media_root):
    image = png_bytes()
    set_quota(operator_client, tenant_a, len(image) + 5)
    body = {"modality": "vision_analysis", "execute_now": False,
            "input_artifact_base64": base64.b64encode(image).decode()}
    assert client_a.post("/v1/multimodal/requests", body, format="json").status_code == 201
    refused = client_a.post("/v1/multimodal/requests", body, format="json")
    assert refused.status_code == 413
    assert refused.json()["code"] == "storage_quota_exceeded"
    assert "input_artifact_base64" in refused.json()["errors"]
    assert len(files_under(media_root)) == 1 and stored(tenant_a) == len(image)


def test_a_request_refused_by_the_spend_limit_leaves_no_input_file(
    client_a, operator_client, tenant_a, media_root, prices
):
    assert operator_client.post(POLICY.format(tenant_a.slug), {
        "daily_spend_limit_usd": "0.000001"}, format="json").status_code == 200
    response = client_a.post("/v1/multimodal/requests", {
        "modality": "speech_to_text",
        "input_artifact_base64": base64.b64encode(wav_bytes(seconds=3)).decode()},
        format="json")
    assert response.status_code == 429
    assert files_under(media_root) == [] and stored(tenant_a) == 0
    assert not Artifact.all_tenants.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_never_pass_the_quota(require_postgres, api_client_for,
                                                 operator_client, tenant_a, media_root):
    data = wav_bytes()
    set_quota(operator_client, tenant_a, 3 * len(data))
    token = api_client_for(tenant_a, scopes=["multimodal:write"]).plaintext
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def send():
        from tests.conftest import make_client

        try:
            client = make_client(token)
            barrier.wait()
            codes.append(client.post(URL, {"file": _file(data)}, format="multipart").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [201] * 3 + [413] * 5
    assert stored(tenant_a) == 3 * len(data) == sum(
        Artifact.all_tenants.values_list("size_bytes", flat=True))
    assert len(files_under(media_root)) == 3


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("a.wav", data, content_type="audio/wav")
