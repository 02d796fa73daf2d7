"""Test jobs (registered in the worker processes of the job tests only)."""

import os
import subprocess
import sys
import time
from pathlib import Path

from agent33.jobs import job
from agent33.jobs.processes import die_with_parent


@job("tests.spawn_and_hang", max_attempts=1, time_limit=2)
def spawn_and_hang(*, pid_file: str) -> None:
    """Starts a child that would run for minutes (as an engine would) and never returns."""
    parent = os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                             preexec_fn=lambda: die_with_parent(expected_parent=parent))
    Path(pid_file).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(300)


@job("tests.always_fails", max_attempts=2, backoff=(0.2,))
def always_fails(*, reason: str) -> None:
    raise RuntimeError(reason)


@job("tests.echo_context", max_attempts=2)
def echo_context(*, value: int) -> dict:
    """What a job sees of where it came from: its tenant scope and request id."""
    from agent33.observability import context
    from agent33.tenancy.context import current_scope

    return {"value": value, "tenant": current_scope().pk,
            "request_id": context.current().request_id}


@job("tests.retry_after", max_attempts=3, backoff=(600.0,))
def retry_after(*, seconds: float) -> None:
    from agent33.jobs import Retry

    raise Retry("the receiver asked to wait", after=seconds)
