"""ElevenLabs text-to-speech engine.

POST {base}/v1/text-to-speech/{voice_id}?output_format=... with header `xi-api-key` and JSON
{text, model_id}. We ask for `pcm_16000` by default (raw 16-bit little-endian mono PCM,
available on every plan) and wrap it in a WAV container ourselves, so stored artifacts are
always WAV. `wav_<rate>` formats are accepted too and passed through after checking them.

Options (validated before a request is stored, see `options`): `voice_id` (the URL path),
`model_id`, `output_format` (query), `language_code`, `voice_settings` (JSON body).
Usage: the `character-cost` response header, ElevenLabs' own count of the characters it
billed; without it, the characters sent.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import quote

from .audio import pcm16_to_wav
from .base import (
    MODALITY_TEXT_TO_SPEECH,
    USAGE_FROM_INPUT,
    USAGE_FROM_PROVIDER,
    InputFacts,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .http import RetryingClient, wav_duration_seconds
from .registry import register_provider

__all__ = ["ElevenLabsProvider"]

# A premade voice ("George") that every account can use.
DEFAULT_VOICE_ID = "JBFqnCBsd6RMkjVDRZzb"
DEFAULT_OUTPUT_FORMAT = "pcm_16000"

_FORMAT_RE = re.compile(r"^(pcm|wav)_(\d+)$")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# Compressed formats (mp3, opus, ulaw) are not offered: artifacts from this engine are WAV.
OUTPUT_FORMATS = tuple(f"{kind}_{rate}" for kind in ("pcm", "wav") for rate in SAMPLE_RATES)
MODELS = ("eleven_multilingual_v2", "eleven_v3", "eleven_flash_v2_5", "eleven_flash_v2",
          "eleven_turbo_v2_5", "eleven_turbo_v2", "eleven_monolingual_v1",
          "eleven_multilingual_v1")
VOICE_SETTINGS = {
    "stability": Option("number", minimum=0, maximum=1),
    "similarity_boost": Option("number", minimum=0, maximum=1),
    "style": Option("number", minimum=0, maximum=1),
    "use_speaker_boost": Option("boolean"),
    "speed": Option("number", minimum=0.7, maximum=1.2),
}


class ElevenLabsProvider(Provider):
    name: ClassVar[str] = "elevenlabs"
    modalities: ClassVar[frozenset[str]] = frozenset({MODALITY_TEXT_TO_SPEECH})
    default_models: ClassVar[dict[str, str]] = {MODALITY_TEXT_TO_SPEECH: "eleven_multilingual_v2"}
    default_base_url: ClassVar[str] = "https://api.elevenlabs.io"
    model_option: ClassVar[str] = "model_id"
    options: ClassVar[dict[str, dict[str, Option]]] = {
        MODALITY_TEXT_TO_SPEECH: {
            "voice_id": Option("string", help="an ElevenLabs voice id",
                               pattern=r"[A-Za-z0-9]{1,64}"),
            "model_id": Option("string", choices=MODELS),
            "output_format": Option("string", choices=OUTPUT_FORMATS),
            "language_code": Option("string", help="ISO 639-1, e.g. de",
                                    pattern=r"[a-z]{2,3}"),
            "voice_settings": Option("object", fields=VOICE_SETTINGS),
        },
    }

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        return {"characters": facts.text_chars}

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        if not call.api_key:
            raise ProviderError(self.name, "no API key is configured")
        base = (call.base_url or self.default_base_url).rstrip("/")
        model = call.model or self.default_models[MODALITY_TEXT_TO_SPEECH]
        voice_id = str(call.options.get("voice_id") or DEFAULT_VOICE_ID)
        output_format = str(call.options.get("output_format") or DEFAULT_OUTPUT_FORMAT)
        match = _FORMAT_RE.match(output_format)
        if match is None:
            # Compressed formats (mp3, opus, ulaw) would break the "audio artifacts are WAV"
            # contract the services rely on, so refuse them before spending credits.
            raise ProviderError(
                self.name,
                f"unsupported output_format {output_format!r}: use pcm_<rate> or wav_<rate>",
            )
        container, sample_rate = match.group(1), int(match.group(2))

        payload: dict[str, Any] = {"text": text, "model_id": model}
        if isinstance(call.options.get("voice_settings"), dict):
            payload["voice_settings"] = call.options["voice_settings"]
        if call.options.get("language_code"):
            payload["language_code"] = str(call.options["language_code"])

        # quote(): the voice id is user-supplied and goes into the path.
        url = f"{base}/v1/text-to-speech/{quote(voice_id, safe='')}"
        with RetryingClient(self.name, call, secret=call.api_key) as client:
            result = client.post(
                url,
                params={"output_format": output_format},
                # The format is chosen by the output_format query parameter; Accept stays
                # httpx's */* so content negotiation cannot turn it into a 406.
                headers={"xi-api-key": call.api_key},
                json=payload,
            )
            audio = result.content
            if container == "pcm":
                # Raw PCM has no header to validate, so reject what is clearly not audio:
                # nothing at all, a text/JSON body, or a byte count that is not whole
                # 16-bit samples.
                looks_textual = result.content_type.startswith("text/") or result.content_type in (
                    "application/json",
                    "application/problem+json",
                )
                if not audio or looks_textual or len(audio) % 2:
                    got = f"{result.content_type or 'no content type'} ({len(audio)} bytes)"
                    if looks_textual:
                        got += f": {_preview(audio)}"
                    raise client.unexpected(f"expected raw 16-bit PCM, got {got}")
                audio = pcm16_to_wav(audio, sample_rate)
            duration = wav_duration_seconds(audio)
            if duration is None:
                raise client.unexpected(
                    f"expected WAV audio, got {result.content_type or 'no content type'} "
                    f"({len(audio)} bytes)"
                )

        cost = result.headers.get("character-cost", "").strip()
        if cost.isdigit():
            usage, source = {"characters": int(cost)}, USAGE_FROM_PROVIDER
        else:
            usage, source = {"characters": len(text)}, USAGE_FROM_INPUT
        output_data: dict[str, Any] = {
            "voice": voice_id,
            "duration_seconds": round(duration, 3),
            "output_format": output_format,
        }
        if result.headers.get("request-id"):
            output_data["request_id"] = result.headers["request-id"]
        return ProviderOutput(
            model=model,
            output_bytes=audio,
            output_content_type="audio/wav",
            output_data=output_data,
            attempts=result.attempts, unanswered_attempts=result.unanswered_attempts,
            usage=usage,
            usage_source=source,
        )


def _preview(body: bytes) -> str:
    # Show a little of a textual body so the operator can see what came back instead.
    try:
        text = json.dumps(json.loads(body), separators=(",", ":"))
    except ValueError:
        text = body[:200].decode("utf-8", errors="replace")
    return " ".join(text[:200].split())


register_provider(ElevenLabsProvider())
