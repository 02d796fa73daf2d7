"""Demo records for `manage.py seed_demo` (idempotent): a spoken sentence, an analysed
image and a request waiting to be executed, produced by the real offline engines."""

from __future__ import annotations

import io

from agent33.tenancy.models import Tenant

from . import services
from .choices import Modality
from .models import MultimodalRequest

DEMO_REQUESTER = "seed_demo"


def _demo_image() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (520, 120), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 35), "AGENT33 DEMO", fill="black", font=ImageFont.load_default(size=44))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def seed_demo(*, tenant: Tenant) -> None:
    if MultimodalRequest.objects.filter(requested_by=DEMO_REQUESTER).exists():
        return
    actor = "seed_demo"
    speech = services.request_create(
        tenant=tenant, actor=actor, modality=Modality.TEXT_TO_SPEECH,
        input_text=f"Welcome to the {tenant.name or tenant.slug} control plane.",
        requested_by=DEMO_REQUESTER,
    )
    image = services.artifact_create(tenant=tenant, actor=actor, content=_demo_image())
    services.request_create(
        tenant=tenant, actor=actor, modality=Modality.VISION_ANALYSIS,
        input_artifact_id=image.pk, requested_by=DEMO_REQUESTER,
    )
    result = speech.result
    if result is not None and result.output_artifact_id:
        # Transcribing the greeting back is left for the visitor to run (it loads Whisper).
        services.request_create(
            tenant=tenant, actor=actor, modality=Modality.SPEECH_TO_TEXT,
            input_artifact_id=result.output_artifact_id, requested_by=DEMO_REQUESTER,
            execute_now=False,
        )
