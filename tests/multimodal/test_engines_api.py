"""The real offline engines, end to end through the API (eager execution).

The enqueue happens on commit; inside a test transaction nothing commits, so `run()` captures
the on-commit callbacks and executes them (the eager task), then reads the request back like
a polling client. (test_api_requests checks that execute_now itself returns completed.)"""

from __future__ import annotations

import io
import re
import wave
from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw, ImageFont

from tests.factories.multimodal import png_bytes, wav_bytes
from tests.multimodal.conftest import b64
from tests.multimodal.speech import fresh_process_speech

pytestmark = pytest.mark.django_db

REQUESTS = "/v1/multimodal/requests"
ARTIFACTS = "/v1/multimodal/artifacts"
SENTENCE = "Please call Stella tomorrow morning."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def recall(reference: str, hypothesis: str) -> float:
    ref, hyp = Counter(words(reference)), Counter(words(hypothesis))
    return sum(min(n, hyp[w]) for w, n in ref.items()) / sum(ref.values())


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    def create_and_run(client, **body) -> tuple[dict, dict]:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(REQUESTS, body, format="json")
        assert response.status_code == 201, response.content
        return read(client, response.json()["id"])

    return create_and_run


def read(client, request_id: str) -> tuple[dict, dict]:
    mm_request = client.get(f"{REQUESTS}/{request_id}").json()
    result = client.get(f"{REQUESTS}/{request_id}/result")
    return mm_request, result.json() if result.status_code == 200 else {}


def fetch(client, artifact_id: str) -> bytes:
    response = client.get(f"{ARTIFACTS}/{artifact_id}/content")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def upload(client, data: bytes) -> str:
    response = client.post(ARTIFACTS, {"file": SimpleUploadedFile("f", data)},
                           format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_tts_gives_a_wav_artifact_whose_duration_grows_with_the_text(client_a, run):
    durations = []
    for text in ("Short.", "A noticeably longer sentence, spoken by the offline engine."):
        mm_request, result = run(client_a, modality="text_to_speech", input_text=text)
        assert mm_request["state"] == "completed", mm_request
        audio = fetch(client_a, result["output_artifact_id"])
        with wave.open(io.BytesIO(audio)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
            assert wav.getframerate() == result["output_data"]["sample_rate"]
        assert seconds == pytest.approx(result["output_data"]["duration_seconds"], abs=0.01)
        durations.append(seconds)
    assert durations[1] > durations[0] * 2


def test_tts_output_is_transcribed_by_stt(client_a, run):
    # The chain: the WAV artifact text_to_speech stores is a speech_to_text input. What the
    # engine hears in it varies with espeak-ng's state (tests/multimodal/speech.py), so the
    # words are checked on fixed speech below.
    _, spoken = run(client_a, modality="text_to_speech", input_text=SENTENCE)
    mm_request, heard = run(client_a, modality="speech_to_text",
                            input_artifact_id=spoken["output_artifact_id"])
    assert mm_request["state"] == "completed", mm_request
    assert mm_request["provider"] == "whisper-local"
    assert heard["metadata"]["model"] == "tiny.en"
    assert heard["output_data"]["duration_seconds"] == pytest.approx(
        spoken["output_data"]["duration_seconds"], abs=0.01)
    assert heard["output_data"]["segments"] and words(heard["output_text"])


def test_stt_through_the_api_recovers_the_words_of_espeak_speech(client_a, run):
    # The same bytes in every run, so the transcript is too (it reads all five words).
    audio = fresh_process_speech(SENTENCE)
    mm_request, heard = run(client_a, modality="speech_to_text",
                            input_artifact_id=upload(client_a, audio))
    assert mm_request["state"] == "completed", mm_request
    assert recall(SENTENCE, heard["output_text"]) >= 0.8, heard["output_text"]


def test_ocr_reads_text_rendered_with_pillow(client_a, run):
    font = ImageFont.load_default(size=36)
    image = Image.new("RGB", (460, 90), "white")
    ImageDraw.Draw(image).text((20, 20), "INVOICE 4711", fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    mm_request, result = run(client_a, modality="vision_analysis",
                             input_artifact_id=upload(client_a, buffer.getvalue()))
    assert mm_request["state"] == "completed", mm_request
    assert mm_request["provider"] == "tesseract"
    assert result["output_data"]["text"] == "INVOICE 4711"
    assert (result["output_data"]["width"], result["output_data"]["height"]) == (460, 90)
    assert "INVOICE 4711" in result["output_text"]
    assert result["output_data"]["dominant_colours"][0]["hex"] == "#ffffff"


def test_a_corrupted_wav_fails_the_request_with_a_clear_message(client_a, run):
    corrupted = wav_bytes()[:12] + b"\x13\x37" * 200  # a RIFF/WAVE header, then garbage
    mm_request, result = run(client_a, modality="speech_to_text",
                             input_artifact_base64=b64(corrupted))
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"].startswith("whisper-local: could not decode audio"), \
        mm_request
    assert result["state"] == "failed"
    assert result["output_text"] == "" and result["output_artifact_id"] == ""


def test_a_corrupted_png_fails_the_request_with_a_clear_message(client_a, run):
    corrupted = png_bytes()[:40] + b"\x00garbage" * 10
    mm_request, _ = run(client_a, modality="vision_analysis",
                        input_artifact_base64=b64(corrupted))
    assert mm_request["state"] == "failed"
    assert mm_request["error_message"].startswith("tesseract: could not read image"), mm_request
