"""Processes a job starts die with it.

`die_with_parent()` (Linux) asks the kernel to SIGKILL the calling process when the thread
that started it ends. Called in a child between fork and exec (`preexec_fn`), it makes an
engine subprocess (tesseract) die with the job process that started it, however that
process ends: a worker's time limit, a Celery hard time limit, a SIGKILL of the worker.
Elsewhere it does nothing; the engines' own timeouts still apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before the call above: then nothing would ever kill us.
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
