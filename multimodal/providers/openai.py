"""OpenAI engines: `openai` (api.openai.com) and `openai-compatible` (any server speaking the
same wire format at a configured base URL, e.g. a self-hosted gateway).

Wire formats used:
- speech_to_text: POST {base}/audio/transcriptions, multipart (file, model) -> {"text": ...}
- text_to_speech: POST {base}/audio/speech, JSON {model, input, voice, response_format: wav}
  -> WAV bytes
- vision_analysis: POST {base}/chat/completions with the image as a base64 data URL in an
  `image_url` content part -> choices[0].message.content

Options read from `ProviderCall.options`: `voice` and `speed` (speech), `language` and
`prompt` (transcription), `prompt` and `detail` (vision).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from typing import Any, ClassVar

from .base import (
    MODALITY_SPEECH_TO_TEXT,
    MODALITY_TEXT_TO_SPEECH,
    MODALITY_VISION,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .http import HttpResult, RetryingClient, wav_duration_seconds
from .registry import register_provider

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider"]

DEFAULT_VOICE = "alloy"
DEFAULT_VISION_PROMPT = "Describe this image."

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


def _usage(body: dict[str, Any]) -> dict[str, Any]:
    usage = body.get("usage")
    return dict(usage) if isinstance(usage, dict) else {}


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
        for option in ("language", "prompt"):
            if call.options.get(option):
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
        return ProviderOutput(
            model=model,
            output_text=text,
            output_data=output_data,
            attempts=result.attempts,
            usage=_usage(body),
        )

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        base = self._base_url(call)
        model = self._model(MODALITY_TEXT_TO_SPEECH, call)
        voice = str(call.options.get("voice") or DEFAULT_VOICE)
        payload: dict[str, Any] = {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": "wav",
        }
        if call.options.get("speed") is not None:
            payload["speed"] = call.options["speed"]
        with self._client(call) as client:
            result = client.post(f"{base}/audio/speech", headers=self._headers(call), json=payload)
            # We asked for WAV; anything else (an error JSON with a 200, an HTML page from a
            # proxy) must not be stored as if it were audio.
            duration = wav_duration_seconds(result.content)
            if duration is None:
                raise client.unexpected(
                    f"expected WAV audio, got {result.content_type or 'no content type'} "
                    f"({len(result.content)} bytes)"
                )
        return ProviderOutput(
            model=model,
            output_bytes=result.content,
            output_content_type="audio/wav",
            output_data={"voice": voice, "duration_seconds": round(duration, 3)},
            attempts=result.attempts,
        )

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
        payload = {
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
            attempts=result.attempts,
            usage=_usage(body),
        )


class OpenAICompatibleProvider(OpenAIProvider):
    """Same wire format, no default endpoint: the base URL must come from configuration,
    because guessing one (or falling back to OpenAI) would send data somewhere unintended."""

    name: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""


register_provider(OpenAIProvider())
register_provider(OpenAICompatibleProvider())
