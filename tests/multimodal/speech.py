"""Speech that is the same bytes in every run, for assertions on what speech-to-text hears.

espeak-ng keeps its pitch-flutter phase, gain control and modulation counters in C globals
that carry over from one synthesis to the next, so the same text comes out slightly
different depending on what the process spoke before: in a test run, on which tests the
pytest-xdist worker happened to run earlier. whisper tiny.en mishears some of those variants
("Please call us at the motto morning" for "Please call Stella tomorrow morning"), which made
a recall threshold fail under `-n 8` and pass under `-n 2`. The first synthesis of a fresh
interpreter always starts from the same state, so it is always the same bytes; and whisper's
decoding of given bytes does not depend on load or timing. Assertions on transcripts use
this speech, so they check the engines' output for a fixed input.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

__all__ = ["fresh_process_speech", "spoken_in_a_fresh_process"]

REPO_ROOT = Path(__file__).resolve().parents[2]

_SPEAK = """
import sys
from multimodal.providers.base import ProviderCall
from multimodal.providers.espeak import EspeakProvider

text, rate = sys.argv[1], sys.argv[2]
options = {"rate": int(rate)} if rate else {}
output = EspeakProvider().synthesize(text, ProviderCall.with_timeout(60, options=options))
sys.stdout.buffer.write(output.output_bytes)
"""


def spoken_in_a_fresh_process(text: str, rate: int | None = None) -> bytes:
    """espeak-ng's WAV of `text` (at `rate` words per minute, else its default) as the
    first synthesis of a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _SPEAK, text, str(rate or "")],
        capture_output=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT)}, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@functools.cache
def fresh_process_speech(text: str, rate: int | None = None) -> bytes:
    """`spoken_in_a_fresh_process`, computed once per test process."""
    return spoken_in_a_fresh_process(text, rate)
