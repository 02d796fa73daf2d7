"""Offline text-to-speech with eSpeak NG.

The `espeakng-loader` wheel ships libespeak-ng.so and its espeak-ng-data directory; we load
that library with ctypes and drive its C API in AUDIO_OUTPUT_SYNCHRONOUS mode, where
espeak_Synth() returns only when synthesis is done and hands 16-bit PCM to our callback. No
system espeak-ng binary or library is used.

libespeak-ng keeps all of its state (voice, rate, callback, output buffers) in globals and is
not re-entrant, so one process-wide lock serialises initialisation and every synthesis.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from pathlib import Path
from typing import Any

from .audio import pcm16_to_wav
from .base import (
    MODALITY_TEXT_TO_SPEECH,
    USAGE_FROM_ENGINE,
    InputFacts,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .registry import register_provider

__all__ = ["EspeakProvider"]

# Values from espeak-ng's speak_lib.h (stable public ABI).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() if data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # trailing sentence pause, so the last word is not clipped
_PARAM_RATE = 1
_EE_OK = 0
_RATE_MIN, _RATE_MAX, _RATE_DEFAULT = 80, 450, 175  # words per minute

MODEL_NAME = "espeak-ng"
DEFAULT_VOICE = "en"
# Voice names are looked up as paths under espeak-ng-data/voices, so only allow plain names
# (optionally with a "+variant" suffix such as "en-us+f3") -- never "../" or slashes.
_VOICE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}(\+[A-Za-z0-9_-]{1,40})?$")

# Estimates for spend limits: espeak-ng speaks about 7,000 characters per compute second on
# one core of this project's 2-core target (0.14 ms each); the estimate allows 3.5 times that.
_ESTIMATE_SECONDS_PER_CHAR = 0.0005
_ESTIMATE_SECONDS_FIXED = 0.01


def _data_dir() -> Path | None:
    try:
        import espeakng_loader
    except ImportError:
        return None
    return Path(espeakng_loader.get_data_path())


_installed: tuple[frozenset[str], frozenset[str]] | None = None


def installed_voices() -> tuple[frozenset[str], frozenset[str]]:
    """(voice names, variant names) shipped in espeak-ng-data: every file under `lang/`
    (its name, lower-case, as espeak-ng matches it: `en-us`, `de`) and under `voices/!v`."""
    global _installed
    if _installed is None:
        data = _data_dir()
        voices: set[str] = set()
        variants: set[str] = set()
        if data is not None:
            voices = {p.name.lower() for p in (data / "lang").rglob("*") if p.is_file()}
            variants = {p.name for p in (data / "voices" / "!v").glob("*")
                        if p.is_file() and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", p.name)}
        _installed = (frozenset(voices), frozenset(variants))
    return _installed


def _check_voice(value: str) -> str | None:
    if not _VOICE_RE.match(value):
        return "must be a voice name, optionally with +variant (en-us, de, en+f3)"
    name, _, variant = value.partition("+")
    voices, variants = installed_voices()
    if name.lower() not in voices:
        return (f"{name!r} is not an installed espeak-ng voice (e.g. "
                f"{', '.join(sorted(v for v in voices if v.startswith('en')))})")
    if variant and variant not in variants:
        return f"variant {variant!r} is not installed (e.g. f1-f5, m1-m8)"
    return None


# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


class _Engine:
    """The loaded library plus the per-call sink the C callback writes into."""

    def __init__(self) -> None:
        import espeakng_loader

        lib_path = espeakng_loader.get_library_path()
        data_dir = Path(espeakng_loader.get_data_path())  # .../espeak-ng-data
        lib = ctypes.CDLL(lib_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int

        # The path argument is the directory that *contains* espeak-ng-data.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     str(data_dir.parent).encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise ProviderError("espeak", f"could not initialise espeak-ng (data at {data_dir})")
        self.lib = lib
        self.sample_rate = rate
        self.chunks: list[bytes] = []
        self.deadline = 0.0
        self.aborted = False
        # Keep a reference: ctypes frees the trampoline if the Python object is collected.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, numsamples: int, _events: Any) -> int:
        if wav and numsamples > 0:
            self.chunks.append(ctypes.string_at(wav, numsamples * 2))
        if time.monotonic() > self.deadline:
            self.aborted = True
            return 1  # tells espeak-ng to abort synthesis
        return 0

    def synthesize(self, text: str, voice: str, rate: int, deadline: float) -> bytes:
        """Caller must hold the module lock."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ProviderError("espeak", f"unknown voice {voice!r}")
        # Parameters are sticky in espeak-ng's globals, so set the rate on every call.
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        encoded = text.encode("utf-8") + b"\0"
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        self.chunks, self.deadline, self.aborted = [], deadline, False
        try:
            status = self.lib.espeak_Synth(buffer, len(encoded), 0, _POS_CHARACTER, 0,
                                           _CHARS_UTF8 | _ENDPAUSE, None, None)
            if self.aborted:
                raise ProviderError("espeak", "deadline exceeded while synthesising speech")
            if status != _EE_OK:
                raise ProviderError("espeak", f"synthesis failed (espeak-ng error {status})")
            return b"".join(self.chunks)
        finally:
            self.chunks = []


_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    """Load and initialise libespeak-ng once; caller must hold `_lock`."""
    global _engine
    if _engine is None:
        try:
            _engine = _Engine()
        except (ImportError, OSError, AttributeError) as exc:
            # Package missing, .so not loadable, or a libespeak-ng without these symbols.
            raise ProviderError("espeak", f"espeak-ng is not available: {exc}") from None
    return _engine


class EspeakProvider(Provider):
    name = "espeak"
    modalities = frozenset({MODALITY_TEXT_TO_SPEECH})
    size_unit = "characters"
    default_models = {MODALITY_TEXT_TO_SPEECH: MODEL_NAME}
    options = {
        MODALITY_TEXT_TO_SPEECH: {
            "voice": Option("string", help="an installed espeak-ng voice, optionally "
                            "+variant: en, en-us, de, en+f3", max_length=81, check=_check_voice),
            "rate": Option("integer", help="words per minute", minimum=_RATE_MIN,
                           maximum=_RATE_MAX),
            "model": Option("string", choices=(MODEL_NAME,)),
        },
    }

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        rate = _ESTIMATE_SECONDS_PER_CHAR if seconds_per_unit is None else seconds_per_unit
        chars = facts.text_chars
        return {"characters": chars, "compute_seconds": round(
            _ESTIMATE_SECONDS_FIXED + chars * rate, 3)}

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        if call.model not in ("", MODEL_NAME):
            raise ProviderError(self.name, f"unknown model {call.model!r}; use {MODEL_NAME!r}")
        # A NUL would silently end the C string early; other control characters are harmless.
        text = text.replace("\0", " ").strip()
        if not text:
            raise ProviderError(self.name, "text is empty")
        voice = str(call.options.get("voice") or DEFAULT_VOICE)
        if not _VOICE_RE.match(voice):
            raise ProviderError(self.name, f"invalid voice name {voice!r}")
        rate = _parse_rate(call.options.get("rate"))

        # Waiting for the lock counts against the deadline: a queue of long texts must not
        # make a later caller overrun its own budget.
        if not _lock.acquire(timeout=max(call.remaining(), 0.0)):
            raise ProviderError(self.name, "deadline exceeded waiting for the speech engine")
        try:
            # Compute time starts once the engine is ours: waiting for it is not work done.
            started = time.monotonic()
            engine = _get_engine()
            pcm = engine.synthesize(text, voice, rate, call.deadline)
            sample_rate = engine.sample_rate
            compute_seconds = time.monotonic() - started
        finally:
            _lock.release()

        if not pcm:
            raise ProviderError(self.name, "espeak-ng produced no audio")
        duration = len(pcm) / 2 / sample_rate
        return ProviderOutput(
            model=MODEL_NAME,
            output_bytes=pcm16_to_wav(pcm, sample_rate),
            output_content_type="audio/wav",
            output_data={
                "duration_seconds": round(duration, 3),
                "sample_rate": sample_rate,
                "voice": voice,
            },
            usage={"characters": len(text), "compute_seconds": round(compute_seconds, 3)},
            usage_source=USAGE_FROM_ENGINE,
        )


def _parse_rate(value: Any) -> int:
    if value is None or value == "":
        return _RATE_DEFAULT
    try:
        rate = int(value)
    except (TypeError, ValueError):
        raise ProviderError("espeak", f"rate must be an integer, got {value!r}") from None
    if not _RATE_MIN <= rate <= _RATE_MAX:
        raise ProviderError("espeak", f"rate must be {_RATE_MIN}-{_RATE_MAX} words per minute")
    return rate


register_provider(EspeakProvider())
