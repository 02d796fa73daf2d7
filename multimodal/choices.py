"""Modalities, request states and the request's state machine (DESIGN §5.2, §7.1).

States: pending → processing → completed | failed | cancelled. A failed request may be
executed again (the contract's execute 409 list names completed, cancelled and processing
only), so failed → processing is a transition too. `REQUEST_MACHINE` is the one rule set:
services move states with one conditional UPDATE whose source set is
`REQUEST_MACHINE.sources_of(target)`, and the Operations Hub reads its controls and
`allowed_actions` from it. Models put a CheckConstraint on the column from `values`.
"""

from __future__ import annotations

from django.db import models

from operations.choices import ControlActionChoice, ControlRule, StateMachine

from .providers.base import MODALITY_SPEECH_TO_TEXT, MODALITY_TEXT_TO_SPEECH, MODALITY_VISION

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AUDIO_CONTENT_TYPES",
    "CONTENT_TYPES_FOR_INPUT",
    "IMAGE_CONTENT_TYPES",
    "OFFLINE_PROVIDERS",
    "REQUEST_MACHINE",
    "TERMINAL",
    "ArtifactOrigin",
    "Modality",
    "RequestState",
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
# The states a request ends in (each ending records its outcome events); failed may still be
# executed again, so it is final for the hub's "active" view, not for execute.
TERMINAL: frozenset[str] = frozenset(
    {RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED}
)

REQUEST_MACHINE = StateMachine(
    label="multimodal request",
    states=tuple(RequestState.values),
    transitions=ALLOWED_TRANSITIONS,
    terminal=TERMINAL,
    controls={
        # The hub's only control; `POST /v1/multimodal/requests/{id}/cancel` is the same move.
        ControlActionChoice.CANCEL.value: ControlRule(
            RequestState.CANCELLED,
            frozenset({RequestState.PENDING, RequestState.PROCESSING}),
        ),
    },
)


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
