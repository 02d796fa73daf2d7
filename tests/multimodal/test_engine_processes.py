"""Engine subprocesses die with the process that started them: a job process killed for its
time limit, or a worker killed outright, leaves no tesseract running (a real process, a
real kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs.conftest import alive, children_of
from tests.workers import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

# A page of small text, 2600 x 2600: about two minutes of OCR on this machine.
OCR_IN_A_PROCESS = """
import io, django
django.setup()
from PIL import Image, ImageDraw
from multimodal.providers.base import ProviderCall
from multimodal.providers.tesseract import TesseractProvider
page = Image.new("L", (2600, 2600), 255)
draw = ImageDraw.Draw(page)
for y in range(0, 2600, 14):
    draw.text((5, y), " ".join(["alpha", "beta", "gamma", "delta"][(y + n) % 4]
                               for n in range(60)), fill=0)
buffer = io.BytesIO()
page.save(buffer, format="PNG")
TesseractProvider().analyze(buffer.getvalue(), "image/png", ProviderCall.with_timeout(300))
"""


def _tesseract_children(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tesseract" in command:
            found.append(child)
    return found


def test_tesseract_dies_with_the_process_that_started_it(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agent33.settings", "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}"}
    job = subprocess.Popen([sys.executable, "-c", OCR_IN_A_PROCESS], cwd=ROOT, env=env,
                           start_new_session=True)
    engine = None
    try:
        [engine] = wait_for(lambda: _tesseract_children(job.pid), timeout=60,
                            message="tesseract to start")
        assert alive(engine)
        # Keep tesseract's stderr pipe open from here: then a dead parent's closed pipe
        # cannot kill it by SIGPIPE at its next warning, and only the death signal can.
        pipe = os.open(f"/proc/{engine}/fd/2", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.kill(job.pid, signal.SIGKILL)  # only the job's own process, as a time limit does
            job.wait()
            # Without the death signal tesseract would run on for minutes, reparented.
            wait_for(lambda: not alive(engine), timeout=5,
                     message="tesseract to die with its job")
        finally:
            os.close(pipe)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        if engine is not None and alive(engine):  # only when the test failed
            os.kill(engine, signal.SIGKILL)
