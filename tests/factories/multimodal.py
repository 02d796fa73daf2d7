"""Factories for multimodal records. Children inherit their parent's tenant."""

from __future__ import annotations

import hashlib
import io
import wave

import factory
from django.core.files.base import ContentFile

from multimodal.choices import ArtifactOrigin, Modality, RequestState
from multimodal.models import Artifact, MultimodalPolicy, MultimodalRequest, MultimodalResult
from tests.factories.tenancy import TenantOwnedFactory


def wav_bytes(seconds: float = 0.2, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def png_bytes(size: tuple[int, int] = (8, 8), colour: str = "red") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


class ArtifactFactory(TenantOwnedFactory):
    class Meta:
        model = Artifact
        exclude = ("data",)

    data = factory.LazyFunction(wav_bytes)
    content_type = "audio/wav"
    origin = ArtifactOrigin.UPLOAD
    size_bytes = factory.LazyAttribute(lambda o: len(o.data))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.data).hexdigest())
    file = factory.LazyAttribute(lambda o: ContentFile(o.data, name="upload.bin"))


class ImageArtifactFactory(ArtifactFactory):
    data = factory.LazyFunction(png_bytes)
    content_type = "image/png"


class MultimodalPolicyFactory(TenantOwnedFactory):
    class Meta:
        model = MultimodalPolicy


class MultimodalRequestFactory(TenantOwnedFactory):
    class Meta:
        model = MultimodalRequest

    modality = Modality.TEXT_TO_SPEECH
    state = RequestState.PENDING
    provider = "espeak"
    input_text = "Hello there."
    requested_timeout_seconds = 60


class SpeechToTextRequestFactory(MultimodalRequestFactory):
    modality = Modality.SPEECH_TO_TEXT
    provider = "whisper-local"
    input_text = ""
    input_artifact = factory.SubFactory(ArtifactFactory, tenant=factory.SelfAttribute("..tenant"))


class MultimodalResultFactory(TenantOwnedFactory):
    class Meta:
        model = MultimodalResult

    request = factory.SubFactory(
        MultimodalRequestFactory,
        tenant=factory.SelfAttribute("..tenant"),
        state=RequestState.COMPLETED,
    )
    state = RequestState.COMPLETED
    provider = factory.SelfAttribute("request.provider")
    output_text = "hello"
    metadata = factory.LazyAttribute(
        lambda o: {"provider": o.provider, "model": "m", "attempts": 1, "latency_ms": 5}
    )
    latency_ms = 5
