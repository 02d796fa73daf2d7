"""The one small interface every multimodal engine implements.

Engines know nothing about Django, tenants or requests: they take bytes or text and a
`ProviderCall` (deadline, model, credentials) and return a `ProviderOutput`, or raise
`ProviderError` saying which provider failed and why. The multimodal services own
everything around them (claiming rows, storing artifacts, recording results).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "MODALITY_SPEECH_TO_TEXT",
    "MODALITY_TEXT_TO_SPEECH",
    "MODALITY_VISION",
    "Provider",
    "ProviderCall",
    "ProviderError",
    "ProviderOutput",
]

MODALITY_SPEECH_TO_TEXT = "speech_to_text"
MODALITY_TEXT_TO_SPEECH = "text_to_speech"
MODALITY_VISION = "vision_analysis"


class ProviderError(Exception):
    """A provider could not produce output. The message is shown to API users as-is,
    so it names the provider and the reason and never contains a credential."""

    def __init__(self, provider: str, reason: str, *, attempts: int = 1, retryable: bool = False):
        self.provider = provider
        self.reason = reason
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(f"{provider}: {reason}")


@dataclass(frozen=True)
class ProviderCall:
    """Everything an engine needs for one call besides its input."""

    deadline: float  # time.monotonic() value after which the call must have ended
    model: str = ""  # "" = the engine's default
    api_key: str = ""
    base_url: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"voice": "alloy"}
    # Private networks the call may reach (multimodal/network.py); empty: public hosts only.
    allowed_networks: tuple[Any, ...] = ()

    @classmethod
    def with_timeout(cls, seconds: float, **kwargs: Any) -> ProviderCall:
        return cls(deadline=time.monotonic() + seconds, **kwargs)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class ProviderOutput:
    """What an engine produced. Audio output is WAV (or the provider's format) bytes that
    the service stores as an artifact."""

    model: str
    output_text: str = ""
    output_bytes: bytes | None = None
    output_content_type: str = ""
    output_data: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    usage: dict[str, Any] = field(default_factory=dict)


class Provider:
    """Base class: subclasses set `name` and `modalities` and implement the methods of the
    modalities they support. Calling an unsupported one raises ProviderError."""

    name: ClassVar[str] = ""
    modalities: ClassVar[frozenset[str]] = frozenset()
    default_models: ClassVar[dict[str, str]] = {}

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:  # text_to_speech
        raise ProviderError(self.name, "does not support text_to_speech")

    def transcribe(self, audio: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        raise ProviderError(self.name, "does not support speech_to_text")

    def analyze(self, image: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        raise ProviderError(self.name, "does not support vision_analysis")

    def run(self, modality: str, *, text: str, data: bytes | None, content_type: str,
            call: ProviderCall) -> ProviderOutput:
        """Dispatch by modality, so callers need no per-modality branching."""
        if modality not in self.modalities:
            raise ProviderError(self.name, f"does not support {modality}")
        if modality == MODALITY_TEXT_TO_SPEECH:
            return self.synthesize(text, call)
        if data is None:
            raise ProviderError(self.name, f"{modality} needs an input artifact")
        if modality == MODALITY_SPEECH_TO_TEXT:
            return self.transcribe(data, content_type, call)
        return self.analyze(data, content_type, call)
