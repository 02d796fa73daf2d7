"""Per-request provider options (DESIGN §7.4): declared per provider and modality, checked at
create after the policy, refused with a 400 naming each bad option before anything is
stored, sent to the provider for real (the loopback fakes record what arrived), and kept in
the result's metadata.options."""

from __future__ import annotations

import io

import pytest
import soundfile

from multimodal import provider_fakes
from multimodal.models import Artifact, MultimodalRequest
from multimodal.providers.registry import get_provider
from multimodal.providers.tesseract import installed_languages
from tests.factories.multimodal import MultimodalPolicyFactory, png_bytes, wav_bytes
from tests.multimodal.conftest import REQUESTS, b64

pytestmark = pytest.mark.django_db


def flac(seconds: float = 0.2) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, [0.0] * int(24000 * seconds), 24000, format="FLAC")
    return buffer.getvalue()


def artifact_type(client, artifact_id: str) -> str:
    return client.get(f"/v1/multimodal/artifacts/{artifact_id}").json()["content_type"]


# --- the options reach the provider -------------------------------------------------------


def test_openai_speech_options_reach_the_wire_and_the_result(client_a, configure, cloud, run):
    configure("openai")
    audio = flac()
    received = provider_fakes.openai_speech(cloud, audio=audio)
    options = {"model": "tts-1-hd", "voice": "nova", "speed": 1.5, "response_format": "flac"}
    mm_request, result = run(client_a, modality="text_to_speech", input_text="Options, please",
                             options=options)
    assert mm_request["state"] == "completed", mm_request
    assert received.last["json"] == {"model": "tts-1-hd", "input": "Options, please",
                                     "voice": "nova", "speed": 1.5, "response_format": "flac"}
    assert mm_request["options"] == options
    assert result["metadata"]["options"] == options
    assert result["metadata"]["model"] == "tts-1-hd"
    assert artifact_type(client_a, result["output_artifact_id"]) == "audio/flac"
    assert result["output_data"]["duration_seconds"] == 0.2


def test_openai_pcm_is_stored_as_wav(client_a, configure, cloud, run):
    configure("openai")
    provider_fakes.openai_speech(cloud, audio=b"\x01\x00" * 2400)  # 0.1 s at 24 kHz
    _, result = run(client_a, modality="text_to_speech", input_text="raw",
                    options={"response_format": "pcm"})
    assert artifact_type(client_a, result["output_artifact_id"]) == "audio/wav"
    assert result["output_data"]["duration_seconds"] == 0.1


def test_audio_in_another_format_than_asked_fails_the_request(client_a, configure, cloud, run):
    configure("openai")
    provider_fakes.openai_speech(cloud, audio=wav_bytes())
    mm_request, _ = run(client_a, modality="text_to_speech", input_text="x",
                        options={"response_format": "mp3"})
    assert mm_request["state"] == "failed"
    assert "expected mp3 audio" in mm_request["error_message"]


def test_openai_transcription_options_reach_the_wire(client_a, configure, cloud, run):
    configure("openai")
    received = provider_fakes.openai_transcription(cloud, text="hallo",
                                                   usage={"type": "duration", "seconds": 1})
    options = {"model": "whisper-1", "language": "de", "prompt": "Namen: Anna",
               "temperature": 0.2}
    mm_request, result = run(client_a, modality="speech_to_text", options=options,
                             input_artifact_base64=b64(wav_bytes()))
    assert mm_request["state"] == "completed", mm_request
    sent = received.last
    assert (sent["model"], sent["language"], sent["prompt"], sent["temperature"]) == (
        "whisper-1", "de", "Namen: Anna", "0.2")
    assert result["metadata"]["options"] == options


def test_openai_vision_options_reach_the_wire(client_a, configure, cloud, run, prices):
    configure("openai")
    received = provider_fakes.openai_chat_vision(
        cloud, reply="Two cats.", usage={"prompt_tokens": 100, "completion_tokens": 3})
    options = {"model": "gpt-4o", "prompt": "How many cats?", "max_tokens": 50,
               "detail": "low"}
    mm_request, result = run(client_a, modality="vision_analysis", options=options,
                             input_artifact_base64=b64(png_bytes()))
    assert mm_request["state"] == "completed", mm_request
    sent = received.last
    assert (sent["model"], sent["prompt"], sent["max_tokens"], sent["detail"]) == (
        "gpt-4o", "How many cats?", 50, "low")
    # Costed at the model chosen by the option: gpt-4o's $2.50 / $10 per million tokens.
    assert result["metadata"]["cost_usd"] == "0.00028"


def test_elevenlabs_options_reach_the_path_query_and_body(client_a, configure, cloud, run):
    configure("elevenlabs", path="/")
    received = provider_fakes.elevenlabs_speech(cloud, pcm=b"\x00\x00" * 2400,
                                                voice_id="Xb7hH8MSUJpSbSDYk0k2")
    options = {"voice_id": "Xb7hH8MSUJpSbSDYk0k2", "model_id": "eleven_flash_v2_5",
               "output_format": "pcm_24000", "language_code": "de",
               "voice_settings": {"stability": 0.4, "use_speaker_boost": True}}
    mm_request, result = run(client_a, modality="text_to_speech", input_text="Guten Tag",
                             options=options)
    assert mm_request["state"] == "completed", mm_request
    assert received.last == {
        "api_key": received.last["api_key"], "output_format": "pcm_24000",
        "json": {"text": "Guten Tag", "model_id": "eleven_flash_v2_5", "language_code": "de",
                 "voice_settings": {"stability": 0.4, "use_speaker_boost": True}},
    }
    assert result["metadata"]["model"] == "eleven_flash_v2_5"
    # No character-cost header in this answer: the characters sent are what ElevenLabs bills.
    assert result["metadata"]["usage"] == {"characters": 9}
    assert result["metadata"]["usage_source"] == "input"


def test_espeak_voice_and_rate(client_a, run):
    mm_request, result = run(client_a, modality="text_to_speech", input_text="Hello",
                             options={"voice": "en-us+f3", "rate": 250})
    assert mm_request["state"] == "completed"
    assert result["output_data"]["voice"] == "en-us+f3"
    assert result["metadata"]["options"] == {"voice": "en-us+f3", "rate": 250}


# --- refused options ----------------------------------------------------------------------


def nothing_stored() -> None:
    assert not MultimodalRequest.all_tenants.exists()
    assert not Artifact.all_tenants.exists()


@pytest.mark.parametrize(("body", "errors"), [
    ({"modality": "text_to_speech", "input_text": "x", "options": {"colour": "red"}},
     {"options.colour"}),
    ({"modality": "text_to_speech", "input_text": "x",
      "options": {"voice": "klingon", "rate": 1000}}, {"options.voice", "options.rate"}),
    ({"modality": "text_to_speech", "input_text": "x", "options": {"voice": "xx+f3"}},
     {"options.voice"}),
    ({"modality": "text_to_speech", "input_text": "x", "options": {"rate": "fast"}},
     {"options.rate"}),
    ({"modality": "speech_to_text", "input_artifact_base64": b64(wav_bytes()),
      "options": {"language": "de"}}, {"options.language"}),
    ({"modality": "vision_analysis", "input_artifact_base64": b64(png_bytes()),
      "options": {"language": "klingon"}}, {"options.language"}),
    ({"modality": "vision_analysis", "input_artifact_base64": b64(png_bytes()),
      "options": {"prompt": "what?"}}, {"options.prompt"}),  # tesseract takes no prompt
], ids=["unknown", "two-bad", "espeak-voice", "rate-type", "whisper-language",
        "tesseract-language", "tesseract-prompt"])
def test_bad_options_are_a_400_naming_each_and_nothing_is_stored(client_a, body, errors):
    response = client_a.post(REQUESTS, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_option"
    assert set(response.json()["errors"]) == errors
    nothing_stored()


@pytest.mark.parametrize(("options", "field"), [
    ({"voice": "bob"}, "options.voice"),
    ({"speed": 4.5}, "options.speed"),
    ({"speed": True}, "options.speed"),
    ({"model": "tts-2"}, "options.model"),
    ({"response_format": "aac"}, "options.response_format"),
    ({"voice_id": "x"}, "options.voice_id"),  # ElevenLabs' name, not OpenAI's
])
def test_openai_speech_options_are_checked(client_a, configure, options, field):
    configure("openai")
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "x",
                                        "provider": "openai", "options": options},
                             format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert response.json()["detail"].startswith(f"{field}: ")
    nothing_stored()


def test_nested_voice_settings_are_checked_key_by_key(client_a, configure):
    configure("elevenlabs", path="/")
    response = client_a.post(REQUESTS, {
        "modality": "text_to_speech", "input_text": "x",
        "options": {"voice_settings": {"stability": 3, "pitch": 1}},
    }, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"options.voice_settings.stability",
                                              "options.voice_settings.pitch"}


def test_policy_limits_are_named_before_options(client_a, tenant_a):
    MultimodalPolicyFactory(tenant=tenant_a, max_text_chars=3)
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "four",
                                        "options": {"colour": "red"}}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "max_text_chars"


def test_options_must_be_an_object(client_a):
    response = client_a.post(REQUESTS, {"modality": "text_to_speech", "input_text": "x",
                                        "options": ["voice", "en"]}, format="json")
    assert response.status_code == 400
    assert "options" in response.json()["errors"]


def test_a_vision_question_is_input_text_or_the_prompt_option_not_both(client_a, configure):
    configure("openai")
    response = client_a.post(REQUESTS, {
        "modality": "vision_analysis", "input_text": "What is it?",
        "input_artifact_base64": b64(png_bytes()), "options": {"prompt": "And this?"},
    }, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["options.prompt"]


def test_offline_engines_accept_what_is_installed():
    espeak = get_provider("espeak")
    assert espeak.validate_options("text_to_speech", {"voice": "de"}) == {"voice": "de"}
    tesseract = get_provider("tesseract")
    languages = installed_languages()
    assert "eng" in languages
    combined = "+".join(languages[:2])
    assert tesseract.validate_options("vision_analysis", {"language": combined}) == {
        "language": combined}


def test_prompts_may_span_lines_but_no_option_carries_a_nul(client_a, configure):
    configure("openai")
    speech = get_provider("openai")
    assert speech.validate_options("speech_to_text", {"prompt": "Names:\n- Anna"}) == {
        "prompt": "Names:\n- Anna"}
    response = client_a.post(REQUESTS, {"modality": "vision_analysis",
                                        "input_artifact_base64": b64(png_bytes()),
                                        "options": {"prompt": "what\x00is it"}}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["options.prompt"]
    nothing_stored()
