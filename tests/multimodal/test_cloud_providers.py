"""Cloud engines (OpenAI, OpenAI-compatible, ElevenLabs) against real loopback HTTP servers.

No Django, no database, no mocked httpx: each test starts from a `pytest-httpserver` server on
127.0.0.1 that speaks the provider's wire format, so the retry, deadline and error-text logic
in `multimodal.providers.http` runs exactly as it would against the real APIs.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from multimodal import provider_fakes
from multimodal.network import parse_networks
from multimodal.providers import http as provider_http
from multimodal.providers.audio import pcm16_to_wav
from multimodal.providers.base import (
    MODALITY_SPEECH_TO_TEXT,
    MODALITY_TEXT_TO_SPEECH,
    MODALITY_VISION,
    ProviderCall,
    ProviderError,
)
from multimodal.providers.elevenlabs import ElevenLabsProvider
from multimodal.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from multimodal.providers.registry import get_provider

KEY = "sk-test-SUPERSECRET-0123456789abcdef"
IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # only needs to round-trip through base64
ONE_SECOND_PCM_16K = b"\x01\x00" * 16000  # 1 s of 16-bit mono audio at 16 kHz


@pytest.fixture()
def httpserver(server: HTTPServer) -> Iterator[HTTPServer]:
    server.clear()
    yield server
    server.clear()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real backoff would make the retry tests slow; the policy shape is what is under test.
    monkeypatch.setattr(provider_http, "BACKOFF_BASE_SECONDS", 0.02)
    monkeypatch.setattr(provider_http, "BACKOFF_MAX_SECONDS", 0.1)


# The loopback servers standing in for the providers are on this machine, which calls may
# reach only when the operator allows it (multimodal/network.py).
LOOPBACK = parse_networks("127.0.0.0/8,::1/128")


def openai_call(httpserver: HTTPServer, seconds: float = 5.0, **kwargs: object) -> ProviderCall:
    return ProviderCall.with_timeout(
        seconds, api_key=KEY, base_url=httpserver.url_for("/v1"), allowed_networks=LOOPBACK,
        **kwargs,
    )


def eleven_call(httpserver: HTTPServer, seconds: float = 5.0, **kwargs: object) -> ProviderCall:
    return ProviderCall.with_timeout(
        seconds, api_key=KEY, base_url=httpserver.url_for("/"), allowed_networks=LOOPBACK,
        **kwargs,
    )


def assert_clean(err: ProviderError) -> None:
    """Every failure message must be free of the key, whatever the server sent back."""
    assert KEY not in str(err)
    assert KEY not in err.reason


def wav_bytes(seconds: float = 0.5, rate: int = 24000) -> bytes:
    return pcm16_to_wav(b"\x00\x00" * int(rate * seconds), rate)


# -- success paths -----------------------------------------------------------------------


def test_providers_are_registered() -> None:
    assert isinstance(get_provider("openai"), OpenAIProvider)
    assert isinstance(get_provider("openai-compatible"), OpenAICompatibleProvider)
    assert isinstance(get_provider("elevenlabs"), ElevenLabsProvider)
    assert OpenAIProvider.default_base_url == "https://api.openai.com/v1"
    assert ElevenLabsProvider.default_base_url == "https://api.elevenlabs.io"


def test_openai_transcription(httpserver: HTTPServer) -> None:
    received = provider_fakes.openai_transcription(
        httpserver, text="hello world", usage={"type": "duration", "seconds": 1}
    )
    audio = wav_bytes()
    out = get_provider("openai").run(
        MODALITY_SPEECH_TO_TEXT,
        text="",
        data=audio,
        content_type="audio/wav",
        call=openai_call(httpserver, options={"language": "en"}),
    )
    assert out.output_text == "hello world"
    assert out.model == "whisper-1"
    assert out.attempts == 1
    assert out.usage == {"type": "duration", "seconds": 1}
    assert received.requests == [{
        "authorization": f"Bearer {KEY}",
        "model": "whisper-1",
        "language": "en",
        "response_format": "json",
        "filename": "audio.wav",
        "audio": audio,
    }]


def test_openai_speech(httpserver: HTTPServer) -> None:
    audio = wav_bytes(0.5)
    received = provider_fakes.openai_speech(httpserver, audio=audio)
    out = get_provider("openai").run(
        MODALITY_TEXT_TO_SPEECH,
        text="Hi there",
        data=None,
        content_type="",
        call=openai_call(httpserver, options={"voice": "nova"}),
    )
    assert received.requests == [{
        "authorization": f"Bearer {KEY}",
        "json": {"model": "tts-1", "input": "Hi there", "voice": "nova",
                 "response_format": "wav"},
    }]
    assert out.output_bytes == audio
    assert out.output_content_type == "audio/wav"
    assert out.model == "tts-1"
    assert out.output_data == {"voice": "nova", "duration_seconds": 0.5}
    assert out.attempts == 1


def test_openai_speech_defaults_voice_and_handles_streamed_wav_header(
    httpserver: HTTPServer,
) -> None:
    # OpenAI streams WAV with a placeholder data size; the duration must come from the bytes.
    audio = bytearray(wav_bytes(0.25))
    data_at = audio.index(b"data")
    struct.pack_into("<I", audio, data_at + 4, 0xFFFFFFFF)
    httpserver.expect_request(
        "/v1/audio/speech",
        method="POST",
        json={"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "wav"},
    ).respond_with_data(bytes(audio), content_type="audio/wav")

    out = OpenAIProvider().synthesize("x", openai_call(httpserver))
    assert out.output_data == {"voice": "alloy", "duration_seconds": 0.25}


def test_openai_vision(httpserver: HTTPServer) -> None:
    received = provider_fakes.openai_chat_vision(
        httpserver,
        reply="A cat on a sofa.",
        reported_model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 90, "completion_tokens": 7, "total_tokens": 97},
    )
    out = get_provider("openai").run(
        MODALITY_VISION,
        text="",
        data=IMAGE,
        content_type="image/png",
        call=openai_call(httpserver, options={"prompt": "What animal is this?"}),
    )
    assert out.output_text == "A cat on a sofa."
    assert out.model == "gpt-4o-mini"
    assert out.usage == {"prompt_tokens": 90, "completion_tokens": 7, "total_tokens": 97}
    assert out.output_data["finish_reason"] == "stop"
    assert received.requests == [{
        "authorization": f"Bearer {KEY}",
        "model": "gpt-4o-mini",
        "prompt": "What animal is this?",
        "image_prefix": "data:image/png;base64",
        "image": IMAGE,
    }]


def test_elevenlabs_speech_wraps_pcm_in_wav(httpserver: HTTPServer) -> None:
    received = provider_fakes.elevenlabs_speech(
        httpserver, pcm=ONE_SECOND_PCM_16K, voice_id="voice-123", character_cost=5
    )
    out = get_provider("elevenlabs").run(
        MODALITY_TEXT_TO_SPEECH,
        text="Hello",
        data=None,
        content_type="",
        call=eleven_call(httpserver, options={"voice_id": "voice-123"}),
    )
    assert received.requests == [{
        "api_key": KEY,
        "output_format": "pcm_16000",
        "json": {"text": "Hello", "model_id": "eleven_multilingual_v2"},
    }]
    assert out.output_content_type == "audio/wav"
    assert out.output_bytes == pcm16_to_wav(ONE_SECOND_PCM_16K, 16000)
    assert out.model == "eleven_multilingual_v2"
    assert out.output_data["duration_seconds"] == 1.0
    assert out.output_data["voice"] == "voice-123"
    assert out.usage == {"characters": 5}
    assert out.attempts == 1


def test_openai_compatible_uses_configured_base_url_and_model(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/gateway/v1/chat/completions",
        method="POST",
        headers={"Authorization": f"Bearer {KEY}"},
    ).respond_with_json(
        {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    )
    call = ProviderCall.with_timeout(
        5, api_key=KEY, base_url=httpserver.url_for("/gateway/v1/"), model="llava-13b",
        allowed_networks=LOOPBACK,
    )
    out = get_provider("openai-compatible").run(
        MODALITY_VISION, text="", data=IMAGE, content_type="image/jpeg", call=call
    )
    assert out.output_text == "ok"
    assert out.model == "llava-13b"
    sent = httpserver.log[0][0].get_json()
    assert sent["model"] == "llava-13b"


def test_openai_compatible_requires_base_url() -> None:
    with pytest.raises(ProviderError) as info:
        OpenAICompatibleProvider().synthesize("x", ProviderCall.with_timeout(5, api_key=KEY))
    assert "base_url" in str(info.value)
    assert info.value.provider == "openai-compatible"


@pytest.mark.parametrize(
    "provider", [OpenAIProvider(), OpenAICompatibleProvider(), ElevenLabsProvider()]
)
def test_missing_api_key_fails_before_any_request(
    httpserver: HTTPServer, provider: OpenAIProvider | ElevenLabsProvider
) -> None:
    call = ProviderCall.with_timeout(5, base_url=httpserver.url_for("/v1"),
                                     allowed_networks=LOOPBACK)
    with pytest.raises(ProviderError) as info:
        provider.synthesize("x", call)
    assert "no API key is configured" in str(info.value)
    assert httpserver.log == []


# -- retries and deadlines ---------------------------------------------------------------


def test_429_with_retry_after_then_success(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/audio/speech", method="POST").respond_with_json(
        {"error": {"message": "Rate limit reached"}}, status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/v1/audio/speech", method="POST").respond_with_data(
        wav_bytes(), content_type="audio/wav"
    )
    started = time.monotonic()
    out = OpenAIProvider().synthesize("x", openai_call(httpserver, seconds=5))
    elapsed = time.monotonic() - started
    assert out.attempts == 2
    assert len(httpserver.log) == 2
    assert 1.0 <= elapsed < 3.0  # waited as told, not the (tiny) backoff


def test_retry_after_beyond_deadline_fails_without_waiting(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/speech", method="POST").respond_with_json(
        {"error": {"message": "Rate limit reached"}}, status=429, headers={"Retry-After": "30"}
    )
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver, seconds=2))
    assert time.monotonic() - started < 1.0
    err = info.value
    assert err.attempts == 1
    assert "HTTP 429" in str(err) and "Rate limit reached" in str(err)
    assert "Retry-After" in str(err) and "deadline" in str(err)
    assert_clean(err)


def test_500_retries_up_to_max_attempts_then_fails(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/transcriptions", method="POST").respond_with_json(
        {"error": {"message": "The server had an error while processing your request."}},
        status=500,
    )
    call = openai_call(httpserver, seconds=5)
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().transcribe(wav_bytes(), "audio/wav", call)
    assert time.monotonic() < call.deadline
    err = info.value
    assert err.attempts == provider_http.MAX_ATTEMPTS == 5
    assert len(httpserver.log) == 5
    assert str(err).startswith("openai: HTTP 500: The server had an error")
    assert "5 attempts" in str(err)
    assert err.retryable
    assert_clean(err)


def test_backoff_that_would_pass_deadline_stops_early(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_http, "BACKOFF_BASE_SECONDS", 10.0)
    monkeypatch.setattr(provider_http, "BACKOFF_MAX_SECONDS", 10.0)
    httpserver.expect_request("/v1/audio/speech", method="POST").respond_with_data(
        "upstream unavailable", status=503
    )
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver, seconds=2))
    assert time.monotonic() - started < 1.0
    assert info.value.attempts == 1
    assert "HTTP 503: upstream unavailable" in str(info.value)
    assert "no time left" in str(info.value)


def test_server_that_never_answers_times_out_at_deadline(httpserver: HTTPServer) -> None:
    release, finished = threading.Event(), threading.Event()

    def hang(request: Request) -> Response:
        release.wait(10)  # far past the deadline; released when the test ends
        finished.set()
        return Response("too late", status=200)

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(hang)
    call = openai_call(httpserver, seconds=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as info:
            OpenAIProvider().analyze(IMAGE, "image/png", call)
    finally:
        release.set()
        # Let the handler finish so its late log entry cannot land in the next test's log.
        finished.wait(5)
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.0
    err = info.value
    assert "timed out after 1.5 s" in str(err)
    assert err.attempts == 1
    assert_clean(err)


def test_401_fails_at_once_with_provider_text(httpserver: HTTPServer) -> None:
    # OpenAI quotes (part of) the key back in its 401 message; it must not leak through.
    httpserver.expect_request("/v1/audio/speech", method="POST").respond_with_json(
        {
            "error": {
                "message": f"Incorrect API key provided: {KEY}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        status=401,
    )
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver))
    err = info.value
    assert err.attempts == 1
    assert len(httpserver.log) == 1
    assert str(err).startswith("openai: HTTP 401: Incorrect API key provided: [redacted].")
    assert not err.retryable
    assert_clean(err)


def test_elevenlabs_401_detail_message(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb").respond_with_json(
        {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}, status=401
    )
    with pytest.raises(ProviderError) as info:
        ElevenLabsProvider().synthesize("x", eleven_call(httpserver))
    assert str(info.value) == "elevenlabs: HTTP 401: Invalid API key (1 attempt)"
    assert len(httpserver.log) == 1


def test_connection_refused_retries_then_fails() -> None:
    with socket.socket() as sock:  # a port that was just free and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    call = ProviderCall.with_timeout(5, api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                                     allowed_networks=LOOPBACK)
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", call)
    err = info.value
    assert err.attempts == provider_http.MAX_ATTEMPTS
    assert "connection failed: ConnectError" in str(err)
    assert_clean(err)


@pytest.mark.parametrize("base_url", ["not a url", "ftp://example.invalid/v1", "http://[::1"])
def test_invalid_base_url_fails_at_once(base_url: str) -> None:
    call = ProviderCall.with_timeout(5, api_key=KEY, base_url=base_url)
    with pytest.raises(ProviderError) as info:
        OpenAICompatibleProvider().synthesize("x", call)
    assert "invalid base_url" in str(info.value)
    assert info.value.attempts == 1


# -- unexpected 200 responses ------------------------------------------------------------


def test_transcription_json_without_text(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/transcriptions").respond_with_json({"result": "hi"})
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().transcribe(wav_bytes(), "audio/wav", openai_call(httpserver))
    assert "unexpected response from openai" in str(info.value)
    assert "'text'" in str(info.value)
    assert info.value.attempts == 1


def test_speech_returning_json_instead_of_audio(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/speech").respond_with_json({"status": "queued"})
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver))
    assert "unexpected response from openai: expected WAV audio" in str(info.value)
    assert "application/json" in str(info.value)


def test_vision_html_page_instead_of_json(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        "<html>proxy login</html>", content_type="text/html"
    )
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().analyze(IMAGE, "image/png", openai_call(httpserver))
    assert "unexpected response from openai: expected JSON, got text/html" in str(info.value)


def test_vision_without_choices(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_json({"choices": []})
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().analyze(IMAGE, "image/png", openai_call(httpserver))
    assert "unexpected response from openai: JSON has no choices[0].message" in str(info.value)


def test_elevenlabs_json_body_with_200_is_not_audio(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb").respond_with_json(
        {"detail": f"echo {KEY}"}
    )
    with pytest.raises(ProviderError) as info:
        ElevenLabsProvider().synthesize("x", eleven_call(httpserver))
    assert "unexpected response from elevenlabs: expected raw 16-bit PCM" in str(info.value)
    assert_clean(info.value)


def test_key_echoed_in_5xx_body_is_scrubbed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/speech").respond_with_data(
        f"gateway error for Authorization: Bearer {KEY}", status=502
    )
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver))
    assert "HTTP 502" in str(info.value) and "[redacted]" in str(info.value)
    assert_clean(info.value)


# -- helpers -----------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert provider_http.parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert provider_http.parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert provider_http.parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert provider_http.parse_retry_after(httpx.Headers({})) is None
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    waited = provider_http.parse_retry_after(
        httpx.Headers({"Retry-After": later}), now=now.timestamp()
    )
    assert waited == 7.0


def test_error_text_shapes() -> None:
    assert provider_http.error_text(b'{"error": {"message": "bad model"}}') == "bad model"
    assert provider_http.error_text(b'{"detail": {"message": "quota"}}') == "quota"
    assert provider_http.error_text(b'{"detail": "not found"}') == "not found"
    assert provider_http.error_text(b'{"detail": [{"msg": "field required"}]}') == (
        "field required"
    )
    assert provider_http.error_text(b"", fallback="Bad Gateway") == "Bad Gateway"
    assert len(provider_http.error_text(b"x" * 5000)) == 300


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "[::1]", "10.1.2.3", "192.168.0.10", "169.254.169.254",
    "[fe80::1]", "224.0.0.1", "0.0.0.0", "[::ffff:127.0.0.1]",
])
def test_a_call_to_this_machine_or_a_private_network_is_refused_before_sending(
    httpserver: HTTPServer, host: str
) -> None:
    call = ProviderCall.with_timeout(5, api_key=KEY, base_url=f"http://{host}:{httpserver.port}/v1")
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", call)
    assert "AGENT33_PROVIDER_PRIVATE_NETWORKS" in str(info.value)
    assert not info.value.retryable
    assert httpserver.log == []  # nothing was sent


def test_a_redirect_is_not_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/audio/speech").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(ProviderError) as info:
        OpenAIProvider().synthesize("x", openai_call(httpserver))
    assert "HTTP 302" in str(info.value)
    assert len(httpserver.log) == 1
