"""Modalities, request states and their transition table (DESIGN §5.2).

States: pending → processing → completed | failed | cancelled. A failed request may be
executed again (the contract's execute 409 list names completed, cancelled and processing
only), so failed → processing is a transition too. Models put a CheckConstraint on the column
from `values`; services move states with one conditional UPDATE whose source set comes from
`sources_for()`.
"""

from __future__ import annotations

from django.db import models

from .providers.base import MODALITY_SPEECH_TO_TEXT, MODALITY_TEXT_TO_SPEECH, MODALITY_VISION

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AUDIO_CONTENT_TYPES",
    "CONTENT_TYPES_FOR_INPUT",
    "IMAGE_CONTENT_TYPES",
    "OFFLINE_PROVIDERS",
    "TERMINAL",
    "ArtifactOrigin",
    "Modality",
    "RequestState",
    "sources_for",
]


class Modality(models.TextChoices):
    SPEECH_TO_TEXT = MODALITY_SPEECH_TO_TEXT, "Speech to text"
    TEXT_TO_SPEECH = MODALITY_TEXT_TO_SPEECH, "Text to speech"
    VISION_ANALYSIS = MODALITY_VISION, "Vision analysis"


class RequestState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RequestState.PENDING: frozenset({RequestState.PROCESSING, RequestState.CANCELLED}),
    RequestState.PROCESSING: frozenset(
        {RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED}
    ),
    RequestState.FAILED: frozenset({RequestState.PROCESSING}),  # execute again
    RequestState.COMPLETED: frozenset(),
    RequestState.CANCELLED: frozenset(),
}
# Terminal for cancel and for the "ended" hook; failed may still be retried by execute.
TERMINAL: frozenset[str] = frozenset(
    {RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED}
)


def sources_for(target: str) -> frozenset[str]:
    """The states from which `target` may be reached: the WHERE clause of a transition."""
    return frozenset(src for src, targets in ALLOWED_TRANSITIONS.items() if target in targets)


class ArtifactOrigin(models.TextChoices):
    UPLOAD = "upload", "Uploaded"
    INLINE = "inline", "Request input (base64)"
    OUTPUT = "output", "Provider output"


# The offline engine that serves each modality when nothing else is configured.
OFFLINE_PROVIDERS: dict[str, str] = {
    Modality.TEXT_TO_SPEECH: "espeak",
    Modality.SPEECH_TO_TEXT: "whisper-local",
    Modality.VISION_ANALYSIS: "tesseract",
}

AUDIO_CONTENT_TYPES = frozenset({"audio/wav", "audio/flac", "audio/ogg", "audio/mpeg"})
IMAGE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
# Which artifacts each modality takes as input (text_to_speech takes text only).
CONTENT_TYPES_FOR_INPUT: dict[str, frozenset[str]] = {
    Modality.SPEECH_TO_TEXT: AUDIO_CONTENT_TYPES,
    Modality.VISION_ANALYSIS: IMAGE_CONTENT_TYPES,
}
