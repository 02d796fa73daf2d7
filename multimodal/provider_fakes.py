"""Loopback stand-ins for the cloud providers, shared by the tests and `make bench-smoke`.

Each function registers one provider endpoint on a pytest-httpserver `HTTPServer` (a real HTTP
server on 127.0.0.1) that answers in the provider's wire format with a canned reply, and
returns a `Received` that records what the engine sent (headers, model, fields, bytes), so the
caller can check the request's wire format after the call. Only the answering side is faked:
the engines' own HTTP code, retries and parsing run unchanged.

pytest-httpserver is a development dependency; nothing in the service imports this module.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer

__all__ = [
    "Received",
    "elevenlabs_speech",
    "openai_chat_vision",
    "openai_speech",
    "openai_transcription",
    "openai_vision_parts",
]

ELEVENLABS_DEFAULT_VOICE = "JBFqnCBsd6RMkjVDRZzb"


@dataclass
class Received:
    """What the engine sent: one dict per request, oldest first."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        assert self.requests, "the provider endpoint received no request"
        return self.requests[-1]


def _json_response(body: dict):
    from werkzeug import Response

    return Response(json.dumps(body), content_type="application/json")


def openai_vision_parts(body: dict) -> tuple[str, str, bytes]:
    """What an OpenAI chat-completions vision request carries: (prompt text, the image data
    URL's prefix such as `data:image/png;base64`, the decoded image bytes)."""
    parts = body["messages"][0]["content"]
    text = next(p["text"] for p in parts if p["type"] == "text")
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    prefix, encoded = url.split(",", 1)
    return text, prefix, base64.b64decode(encoded)


def openai_transcription(
    server: HTTPServer, *, text: str, usage: dict | None = None, prefix: str = "/v1"
) -> Received:
    """POST {prefix}/audio/transcriptions (multipart: file, model, ...) → {"text", "usage"}."""
    received = Received()

    def answer(request):
        upload = request.files["file"]
        received.requests.append(
            {
                "authorization": request.headers.get("Authorization"),
                "model": request.form.get("model"),
                "language": request.form.get("language"),
                "response_format": request.form.get("response_format"),
                "filename": upload.filename,
                "audio": upload.read(),
            }
        )
        return _json_response({"text": text, **({"usage": usage} if usage else {})})

    server.expect_request(f"{prefix}/audio/transcriptions", method="POST").respond_with_handler(
        answer
    )
    return received


def openai_speech(server: HTTPServer, *, audio: bytes, prefix: str = "/v1") -> Received:
    """POST {prefix}/audio/speech (JSON: model, input, voice, response_format) → WAV bytes."""
    from werkzeug import Response

    received = Received()

    def answer(request):
        received.requests.append(
            {"authorization": request.headers.get("Authorization"), "json": request.get_json()}
        )
        return Response(audio, content_type="audio/wav")

    server.expect_request(f"{prefix}/audio/speech", method="POST").respond_with_handler(answer)
    return received


def openai_chat_vision(
    server: HTTPServer,
    *,
    reply: str,
    usage: dict | None = None,
    reported_model: str | None = None,
    prefix: str = "/v1",
) -> Received:
    """POST {prefix}/chat/completions with an image_url part → choices[0].message.content.
    `reported_model` is the model the answer names (OpenAI names a dated snapshot); by
    default the one asked for."""
    received = Received()

    def answer(request):
        body = request.get_json()
        prompt, image_prefix, image = openai_vision_parts(body)
        received.requests.append(
            {
                "authorization": request.headers.get("Authorization"),
                "model": body["model"],
                "prompt": prompt,
                "image_prefix": image_prefix,
                "image": image,
            }
        )
        return _json_response(
            {
                "id": "chatcmpl-loopback",
                "model": reported_model or body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                **({"usage": usage} if usage else {}),
            }
        )

    server.expect_request(f"{prefix}/chat/completions", method="POST").respond_with_handler(
        answer
    )
    return received


def elevenlabs_speech(
    server: HTTPServer,
    *,
    pcm: bytes,
    voice_id: str = ELEVENLABS_DEFAULT_VOICE,
    character_cost: int | None = None,
) -> Received:
    """POST /v1/text-to-speech/{voice_id}?output_format=... (header xi-api-key; JSON: text,
    model_id) → raw PCM, with ElevenLabs' `character-cost` header when given."""
    from werkzeug import Response

    received = Received()

    def answer(request):
        received.requests.append(
            {
                "api_key": request.headers.get("xi-api-key"),
                "output_format": request.args.get("output_format"),
                "json": request.get_json(),
            }
        )
        headers = {"character-cost": str(character_cost)} if character_cost is not None else {}
        return Response(pcm, content_type="audio/pcm", headers=headers)

    server.expect_request(
        f"/v1/text-to-speech/{voice_id}", method="POST"
    ).respond_with_handler(answer)
    return received
