"""Audio helpers shared by the offline speech engines.

Decoding uses `soundfile` (libsndfile ships inside its wheel: WAV, FLAC, OGG/Vorbis/Opus and,
from libsndfile 1.1 on, MP3), so no ffmpeg/PyAV is needed. Resampling uses `soxr`: a ~1 MB
wheel purpose-built for band-limited sample-rate conversion, faster and cleaner than
`scipy.signal.resample_poly` and without pulling in all of SciPy for one function.

numpy, soundfile and soxr are imported inside the functions so that importing the provider
package stays cheap (the Django app imports it at start-up).
"""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING, BinaryIO

from .base import ProviderError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TARGET_SAMPLE_RATE", "decode_audio", "header_seconds", "pcm16_to_wav", "resample",
           "wav_duration"]

TARGET_SAMPLE_RATE = 16_000  # what Whisper-family models expect


def resample(samples: np.ndarray, from_rate: int, to_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float signal; returns float32. A no-op when the rates already match."""
    import numpy as np
    import soxr

    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate or samples.size == 0:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    # "HQ" is soxr's default quality; VHQ buys nothing audible for 16 kHz speech.
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def decode_audio(data: bytes, *, provider: str, target_rate: int = TARGET_SAMPLE_RATE,
                 max_seconds: float | None = None) -> np.ndarray:
    """Decode WAV/FLAC/OGG/MP3 (whatever libsndfile reads) bytes into mono float32 in
    [-1, 1] at `target_rate`. Undecodable input raises ProviderError naming `provider`."""
    import numpy as np
    import soundfile as sf

    if not data:
        raise ProviderError(provider, "could not decode audio: the input is empty")
    try:
        # Check the header first so an oversized upload is refused before it is decoded
        # into memory (one hour of 48 kHz stereo float32 is ~1.4 GB).
        info = sf.info(io.BytesIO(data))
        if max_seconds is not None and info.samplerate > 0 \
                and info.frames / info.samplerate > max_seconds:
            raise ProviderError(
                provider,
                f"audio is {info.frames / info.samplerate:.0f} s long; "
                f"the limit is {max_seconds:.0f} s",
            )
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except ProviderError:
        raise
    except Exception as exc:  # libsndfile reports bad input as several exception types
        raise ProviderError(provider, f"could not decode audio: {_describe(exc)}") from None

    if samples.size == 0:
        raise ProviderError(provider, "could not decode audio: it contains no samples")
    # Average the channels: a plain downmix is what speech recognisers are trained on.
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise ProviderError(provider, "could not decode audio: it contains NaN/inf samples")
    return resample(mono, int(rate), target_rate)


def pcm16_to_wav(pcm: bytes | np.ndarray, sample_rate: int, channels: int = 1) -> bytes:
    """Wrap signed 16-bit little-endian PCM (bytes or an int16 array) in a WAV container."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        import numpy as np

        pcm = np.asarray(pcm, dtype="<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(bytes(pcm))
    return buffer.getvalue()


def header_seconds(source: bytes | BinaryIO) -> float | None:
    """Seconds of audio, read from the file's header by libsndfile (nothing is decoded), or
    None when it cannot tell: an estimate or a fallback count, never a reason to fail."""
    try:
        import soundfile

        info = soundfile.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception:  # libsndfile reports unreadable input as several exception types
        return None
    return info.frames / info.samplerate if info.samplerate else None


def wav_duration(wav_bytes: bytes) -> float:
    """Duration in seconds of a PCM WAV (as produced by pcm16_to_wav)."""
    with wave.open(io.BytesIO(wav_bytes), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def _describe(exc: Exception) -> str:
    # libsndfile messages look like "Error opening <_io.BytesIO object at 0x..>: Format not
    # recognised." -- keep the useful tail, drop the object repr.
    text = str(exc).strip() or type(exc).__name__
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return text.rstrip(".")
