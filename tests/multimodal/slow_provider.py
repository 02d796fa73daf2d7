"""A test-only provider for worker tests: `test-slow` speaks "sleep <seconds>" slowly.

It ignores its deadline on purpose (a misbehaving engine), appends "start <pid>" / "end <pid>"
lines to the file named by SLOW_PROVIDER_LOG so tests can see when it runs, and returns a
short WAV of silence. Worker processes import it through MULTIMODAL_PROVIDER_MODULES
(tests.multimodal.worker_settings); tests import it directly.
"""

from __future__ import annotations

import os
import re
import time

from multimodal.providers.audio import pcm16_to_wav
from multimodal.providers.base import (
    MODALITY_TEXT_TO_SPEECH,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from multimodal.providers.registry import register_provider

NAME = "test-slow"


def _log(event: str) -> None:
    path = os.environ.get("SLOW_PROVIDER_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{event} {os.getpid()}\n")


class SlowProvider(Provider):
    name = NAME
    modalities = frozenset({MODALITY_TEXT_TO_SPEECH})

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        match = re.fullmatch(r"sleep (\d+(?:\.\d+)?)", text.strip())
        if match is None:
            raise ProviderError(self.name, "input must be 'sleep <seconds>'")
        _log("start")
        time.sleep(float(match.group(1)))
        _log("end")
        return ProviderOutput(
            model="slow-1",
            output_bytes=pcm16_to_wav(b"\x00\x00" * 1600, 16000),
            output_content_type="audio/wav",
            output_data={"slept": float(match.group(1))},
        )


register_provider(SlowProvider())
