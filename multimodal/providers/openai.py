"""OpenAI engines: `openai` (api.openai.com) and `openai-compatible` (any server speaking the
same wire format at a configured base URL, e.g. a self-hosted gateway).

Wire formats used:
- speech_to_text: POST {base}/audio/transcriptions, multipart (file, model, language?,
  prompt?, temperature?) -> {"text": ..., "usage": {"type": "duration", "seconds"} or
  {"type": "tokens", "input_tokens", "output_tokens"}}
- text_to_speech: POST {base}/audio/speech, JSON {model, input, voice, speed?,
  response_format (wav by default)} -> audio bytes
- vision_analysis: POST {base}/chat/completions with the image as a base64 data URL in an
  `image_url` content part (detail?), max_tokens? -> choices[0].message.content, and
  `usage` {prompt_tokens, completion_tokens}

Options (`options` below, validated before a request is stored) reach the wire as named.
Usage is read from the response's `usage`; text-to-speech responses carry none, and OpenAI
bills speech by input character, so it is counted from the text sent.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
from typing import Any, ClassVar

from ..sniffing import sniff_content_type
from .audio import header_seconds, pcm16_to_wav
from .base import (
    MODALITY_SPEECH_TO_TEXT,
    MODALITY_TEXT_TO_SPEECH,
    MODALITY_VISION,
    USAGE_FROM_INPUT,
    USAGE_FROM_PROVIDER,
    InputFacts,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .http import HttpResult, RetryingClient, wav_duration_seconds
from .registry import register_provider

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider", "image_tokens"]

DEFAULT_VOICE = "alloy"
DEFAULT_VISION_PROMPT = "Describe this image."
# What `response_format` asks for → the content type stored. `pcm` is raw 24 kHz 16-bit mono,
# wrapped in a WAV container here so the artifact is playable.
SPEECH_FORMATS = {"wav": "audio/wav", "pcm": "audio/wav", "mp3": "audio/mpeg",
                  "flac": "audio/flac", "opus": "audio/ogg"}
PCM_SAMPLE_RATE = 24_000
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx",
          "sage", "shimmer", "verse")
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}"
# Estimates for spend limits: output tokens when a vision request sets no max_tokens, and
# about four characters per prompt token.
DEFAULT_ESTIMATED_OUTPUT_TOKENS = 1024
CHARS_PER_TOKEN = 4


def image_tokens(model: str, width: int, height: int, detail: str = "auto") -> int:
    """Input tokens OpenAI counts for one image (its published formula for the GPT-4o
    family): `low` detail is a base count; otherwise the image is scaled to fit 2048x2048,
    then its short side to 768, and every 512-pixel tile adds a tile count. gpt-4o-mini
    counts about 33 times more tokens at a lower price per token."""
    base, per_tile = (2833, 5667) if model.startswith("gpt-4o-mini") else (85, 170)
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return base + per_tile * math.ceil(w / 512) * math.ceil(h / 512)

# The transcription endpoint infers the audio format from the upload's file name, so the
# name must carry an extension that matches the content type.
_AUDIO_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/m4a": "m4a",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
}


def _upload_name(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    ext = _AUDIO_EXTENSIONS.get(kind)
    if ext is None:
        guessed = mimetypes.guess_extension(kind) if kind else None
        ext = guessed.lstrip(".") if guessed else "wav"
    return f"audio.{ext}"


def _json_body(result: HttpResult, client: RetryingClient) -> dict[str, Any]:
    try:
        body = json.loads(result.content)
    except ValueError:
        raise client.unexpected(
            f"expected JSON, got {result.content_type or 'no content type'} "
            f"({len(result.content)} bytes)"
        ) from None
    if not isinstance(body, dict):
        raise client.unexpected(f"expected a JSON object, got {type(body).__name__}")
    return body


def _count(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
            or not math.isfinite(value):
        return None
    return value


def _transcription_usage(body: dict[str, Any]) -> dict[str, Any]:
    """whisper-1 reports `{"type": "duration", "seconds": n}`, the gpt-4o transcription models
    `{"type": "tokens", "input_tokens", "output_tokens", ...}`."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    if usage.get("type") == "duration" and _count(usage.get("seconds")) is not None:
        return {"audio_seconds": usage["seconds"]}
    found = {unit: _count(usage.get(unit)) for unit in ("input_tokens", "output_tokens")}
    return {unit: value for unit, value in found.items() if value is not None}


def _chat_usage(body: dict[str, Any]) -> dict[str, Any]:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    found = {"input_tokens": _count(usage.get("prompt_tokens")),
             "output_tokens": _count(usage.get("completion_tokens"))}
    return {unit: value for unit, value in found.items() if value is not None}


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    modalities: ClassVar[frozenset[str]] = frozenset(
        {MODALITY_SPEECH_TO_TEXT, MODALITY_TEXT_TO_SPEECH, MODALITY_VISION}
    )
    default_models: ClassVar[dict[str, str]] = {
        MODALITY_SPEECH_TO_TEXT: "whisper-1",
        MODALITY_TEXT_TO_SPEECH: "tts-1",
        MODALITY_VISION: "gpt-4o-mini",
    }
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    options: ClassVar[dict[str, dict[str, Option]]] = {
        MODALITY_TEXT_TO_SPEECH: {
            "model": Option("string", choices=("tts-1", "tts-1-hd", "gpt-4o-mini-tts")),
            "voice": Option("string", choices=VOICES),
            "speed": Option("number", minimum=0.25, maximum=4.0),
            "response_format": Option("string", choices=tuple(SPEECH_FORMATS)),
        },
        MODALITY_SPEECH_TO_TEXT: {
            "model": Option("string", choices=("whisper-1", "gpt-4o-transcribe",
                                               "gpt-4o-mini-transcribe")),
            "language": Option("string", help="ISO 639-1, e.g. en", pattern=r"[a-z]{2}"),
            "prompt": Option("string", max_length=1000),
            "temperature": Option("number", minimum=0, maximum=1),
        },
        MODALITY_VISION: {
            "model": Option("string", help="a chat model name", pattern=MODEL_NAME_PATTERN),
            "prompt": Option("string", max_length=4000),
            "max_tokens": Option("integer", minimum=1, maximum=16384),
            "detail": Option("string", choices=("auto", "low", "high")),
        },
    }

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        if modality == MODALITY_TEXT_TO_SPEECH:
            return {"characters": facts.text_chars}
        if modality == MODALITY_SPEECH_TO_TEXT:
            if facts.audio_seconds is None:
                return {}
            # whisper-1 reports whole seconds, rounded up.
            return {"audio_seconds": math.ceil(facts.audio_seconds)}
        if facts.image_width is None or facts.image_height is None:
            return {}
        prompt = options.get("prompt") or DEFAULT_VISION_PROMPT
        return {
            "input_tokens": image_tokens(model, facts.image_width, facts.image_height,
                                         options.get("detail", "auto"))
            + math.ceil(max(facts.text_chars, len(prompt)) / CHARS_PER_TOKEN),
            "output_tokens": options.get("max_tokens", DEFAULT_ESTIMATED_OUTPUT_TOKENS),
        }

    # -- plumbing -------------------------------------------------------------------------

    def _base_url(self, call: ProviderCall) -> str:
        base = (call.base_url or self.default_base_url).rstrip("/")
        if not base:
            raise ProviderError(self.name, "no base_url is configured")
        return base

    def _client(self, call: ProviderCall) -> RetryingClient:
        # Checked before any network activity so a misconfiguration fails fast and clearly.
        if not call.api_key:
            raise ProviderError(self.name, "no API key is configured")
        return RetryingClient(self.name, call, secret=call.api_key)

    def _headers(self, call: ProviderCall) -> dict[str, str]:
        return {"Authorization": f"Bearer {call.api_key}"}

    def _model(self, modality: str, call: ProviderCall) -> str:
        return call.model or self.default_models[modality]

    # -- modalities -----------------------------------------------------------------------

    def transcribe(self, audio: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        base = self._base_url(call)
        model = self._model(MODALITY_SPEECH_TO_TEXT, call)
        form: dict[str, str] = {"model": model, "response_format": "json"}
        for option in ("language", "prompt", "temperature"):
            if call.options.get(option) is not None:
                form[option] = str(call.options[option])
        upload = (_upload_name(content_type), audio, content_type or "application/octet-stream")
        with self._client(call) as client:
            result = client.post(
                f"{base}/audio/transcriptions",
                headers=self._headers(call),
                data=form,
                files={"file": upload},
            )
            body = _json_body(result, client)
            text = body.get("text")
            if not isinstance(text, str):
                raise client.unexpected("JSON has no string 'text' field")
        output_data = {k: body[k] for k in ("language", "duration") if k in body}
        usage, source = _transcription_usage(body), USAGE_FROM_PROVIDER
        if not usage:
            # An answer without usage (older or compatible servers): the audio's length,
            # read from its header, is what per-minute pricing bills.
            seconds = header_seconds(audio)
            if seconds is not None:
                usage, source = {"audio_seconds": round(seconds, 3)}, USAGE_FROM_INPUT
        return ProviderOutput(
            model=model,
            output_text=text,
            output_data=output_data,
            attempts=result.attempts, unanswered_attempts=result.unanswered_attempts,
            usage=usage,
            usage_source=source,
        )

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        base = self._base_url(call)
        model = self._model(MODALITY_TEXT_TO_SPEECH, call)
        voice = str(call.options.get("voice") or DEFAULT_VOICE)
        response_format = str(call.options.get("response_format") or "wav")
        payload: dict[str, Any] = {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": response_format,
        }
        if call.options.get("speed") is not None:
            payload["speed"] = call.options["speed"]
        with self._client(call) as client:
            result = client.post(f"{base}/audio/speech", headers=self._headers(call), json=payload)
            audio, content_type = self._checked_audio(result, response_format, client)
        output_data: dict[str, Any] = {"voice": voice, "response_format": response_format}
        duration = wav_duration_seconds(audio) if content_type == "audio/wav" \
            else header_seconds(audio)
        if duration is not None:
            output_data["duration_seconds"] = round(duration, 3)
        return ProviderOutput(
            model=model,
            output_bytes=audio,
            output_content_type=content_type,
            output_data=output_data,
            attempts=result.attempts, unanswered_attempts=result.unanswered_attempts,
            # OpenAI's speech answer carries no usage; it bills per input character.
            usage={"characters": len(text)},
            usage_source=USAGE_FROM_INPUT,
        )

    @staticmethod
    def _checked_audio(result: HttpResult, response_format: str,
                       client: RetryingClient) -> tuple[bytes, str]:
        """The audio in the format asked for, or ProviderError: anything else (an error JSON
        with a 200, an HTML page from a proxy) must not be stored as if it were audio."""
        expected = SPEECH_FORMATS[response_format]
        audio = result.content
        got = f"{result.content_type or 'no content type'} ({len(audio)} bytes)"
        if response_format == "pcm":
            textual = result.content_type.startswith("text/") or "json" in result.content_type
            if not audio or textual or len(audio) % 2:
                raise client.unexpected(f"expected raw 16-bit PCM, got {got}")
            return pcm16_to_wav(audio, PCM_SAMPLE_RATE), expected
        if response_format == "wav":
            if wav_duration_seconds(audio) is None:
                raise client.unexpected(f"expected WAV audio, got {got}")
        elif sniff_content_type(audio[:16]) != expected:
            raise client.unexpected(f"expected {response_format} audio, got {got}")
        return audio, expected

    def analyze(self, image: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        base = self._base_url(call)
        model = self._model(MODALITY_VISION, call)
        prompt = str(call.options.get("prompt") or DEFAULT_VISION_PROMPT)
        mime = content_type.split(";")[0].strip() or "image/png"
        image_part: dict[str, Any] = {
            "url": f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        }
        if call.options.get("detail"):
            image_part["detail"] = str(call.options["detail"])
        payload: dict[str, Any] = {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": image_part},
                    ],
                }
            ],
        }
        if call.options.get("max_tokens") is not None:
            payload["max_tokens"] = call.options["max_tokens"]
        with self._client(call) as client:
            result = client.post(
                f"{base}/chat/completions", headers=self._headers(call), json=payload
            )
            body = _json_body(result, client)
            choices = body.get("choices")
            first = choices[0] if isinstance(choices, list) and choices else None
            if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
                raise client.unexpected("JSON has no choices[0].message")
            message = first["message"]
            content = message.get("content")
            if content is None and isinstance(message.get("refusal"), str):
                # A refusal is a real answer from the model, not a transport problem.
                raise client.error(f"model refused: {message['refusal']}")
            if not isinstance(content, str):
                raise client.unexpected("choices[0].message.content is not a string")
        output_data: dict[str, Any] = {"prompt": prompt}
        if first.get("finish_reason"):
            output_data["finish_reason"] = first["finish_reason"]
        if isinstance(body.get("model"), str) and body["model"] != model:
            # OpenAI answers with the dated snapshot it resolved the alias to; keep both.
            output_data["response_model"] = body["model"]
        return ProviderOutput(
            model=model,
            output_text=content,
            output_data=output_data,
            attempts=result.attempts, unanswered_attempts=result.unanswered_attempts,
            usage=_chat_usage(body),
        )


def _any_model(options: dict[str, Option]) -> dict[str, Option]:
    return {**options, "model": Option("string", help="a model name",
                                       pattern=MODEL_NAME_PATTERN)}


class OpenAICompatibleProvider(OpenAIProvider):
    """Same wire format, no default endpoint: the base URL must come from configuration,
    because guessing one (or falling back to OpenAI) would send data somewhere unintended.
    A self-hosted server has its own models and voices, so those are any well-formed name."""

    name: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""
    options: ClassVar[dict[str, dict[str, Option]]] = {
        MODALITY_TEXT_TO_SPEECH: {
            **_any_model(OpenAIProvider.options[MODALITY_TEXT_TO_SPEECH]),
            "voice": Option("string", help="a voice name", pattern=r"[A-Za-z0-9._-]{1,64}"),
        },
        MODALITY_SPEECH_TO_TEXT: _any_model(OpenAIProvider.options[MODALITY_SPEECH_TO_TEXT]),
        MODALITY_VISION: OpenAIProvider.options[MODALITY_VISION],
    }


register_provider(OpenAIProvider())
register_provider(OpenAICompatibleProvider())
