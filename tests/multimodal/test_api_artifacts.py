"""Artifacts: upload with sniffed content types, policy size limit, storage paths,
metadata and content for the owner only."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from multimodal.models import Artifact
from multimodal.sniffing import sniff_content_type
from tests.factories.multimodal import MultimodalPolicyFactory, png_bytes, wav_bytes

URL = "/v1/multimodal/artifacts"
pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name: str = "file.bin", content_type: str = "text/plain"):
    return client.post(URL, {"file": SimpleUploadedFile(name, data, content_type=content_type)},
                       format="multipart")


def image_bytes(fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, fmt)
    return buffer.getvalue()


def audio_bytes(fmt: str, subtype: str | None = None) -> bytes:
    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(8000, dtype="float32"), 16000, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: wav_bytes(), "audio/wav"),
        (lambda: audio_bytes("FLAC"), "audio/flac"),
        (lambda: audio_bytes("OGG", "VORBIS"), "audio/ogg"),
        (lambda: audio_bytes("MP3", "MPEG_LAYER_III"), "audio/mpeg"),
        (lambda: image_bytes("PNG"), "image/png"),
        (lambda: image_bytes("JPEG"), "image/jpeg"),
        (lambda: image_bytes("WEBP"), "image/webp"),
        (lambda: image_bytes("GIF"), "image/gif"),
    ],
)
def test_upload_sniffs_the_real_content_type(client_a, tenant_a, media_root, make, expected):
    data = make()
    # The client claims something else entirely; the bytes decide.
    response = upload(client_a, data, name="innocent.txt", content_type="text/plain")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "content_type", "size_bytes", "sha256", "created_at"}
    assert body["id"].startswith("artifact-")
    assert body["content_type"] == expected
    assert body["size_bytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()

    artifact = Artifact.all_tenants.get(pk=body["id"])
    # Tenant-prefixed, unguessable path under MEDIA_ROOT, through the storage API.
    parts = Path(artifact.file.name).parts
    assert parts[0] == tenant_a.slug and parts[1] == "multimodal"
    assert "/".join(parts[2:5]) == artifact.created_at.strftime("%Y/%m/%d")
    unguessable, _, rest = parts[5].partition("-artifact-")
    assert len(unguessable) >= 24 and f"artifact-{rest}".startswith(body["id"])
    assert (media_root / artifact.file.name).read_bytes() == data

    content = client_a.get(f"{URL}/{body['id']}/content", HTTP_ACCEPT="audio/wav")
    assert content.status_code == 200
    assert content["Content-Type"] == expected
    assert b"".join(content.streaming_content) == data
    assert client_a.get(f"{URL}/{body['id']}").json() == body


@pytest.mark.parametrize(
    "data",
    [
        b"hello, I am a text file",
        b"%PDF-1.7\n...",
        b"PK\x03\x04zipzipzip",
        b"RIFF\x00\x00\x00\x00AVI LIST",
        b"\xff\xf1\x50\x80 (AAC ADTS is not MP3)",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
)
def test_unsupported_types_are_a_400(client_a, data):
    response = upload(client_a, data, name="x.wav", content_type="audio/wav")
    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_content_type"
    assert "file" in response.json()["errors"]
    assert not Artifact.all_tenants.exists()


def test_missing_or_empty_file_is_a_400(client_a):
    response = client_a.post(URL, {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["errors"]
    response = upload(client_a, b"")
    assert response.status_code == 400
    assert "file" in response.json()["errors"]
    response = client_a.post(URL, {"file": "not a file"}, format="json")
    assert response.status_code in (400, 415)


def test_over_the_policy_limit_is_a_400_naming_it(client_a, tenant_a):
    MultimodalPolicyFactory(tenant=tenant_a, max_artifact_bytes=1000)
    response = upload(client_a, png_bytes((400, 400), "white") + b"\x00" * 2000)
    assert response.status_code == 400
    assert response.json()["code"] == "max_artifact_bytes"
    assert "max_artifact_bytes" in response.json()["detail"]
    assert "1000" in response.json()["detail"]


@override_settings(AGENT33_MAX_BODY_BYTES=50_000)
def test_over_the_global_body_limit_is_a_413(client_a):
    response = upload(client_a, wav_bytes(seconds=2))
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_sniffer_table():
    assert sniff_content_type(b"RIFF\x10\x00\x00\x00WAVEfmt ") == "audio/wav"
    assert sniff_content_type(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_content_type(b"ID3\x04\x00") == "audio/mpeg"
    assert sniff_content_type(b"\xff\xfb\x90\x00") == "audio/mpeg"
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"RIFF") is None
    assert sniff_content_type(b"") is None


def test_content_of_a_file_missing_from_storage_is_a_404_not_a_500(client_a, tenant_a):
    created = upload(client_a, wav_bytes()).json()
    artifact = Artifact.all_tenants.get(pk=created["id"])
    artifact.file.delete(save=False)
    response = client_a.get(f"{URL}/{created['id']}/content")
    assert response.status_code == 404
    assert response.json()["code"] == "artifact_content_missing"
