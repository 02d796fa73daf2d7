"""`manage.py run` (what `make run` starts): the development web server and one background
worker together. Ctrl-C (or SIGTERM) stops both: the worker finishes or re-queues what it
runs, the server exits; if either stops by itself, the other is stopped too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the development server and one background worker; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--grace", type=float, default=10.0,
                            help="seconds the worker's running jobs may finish in on Ctrl-C")

    def handle(self, *args, addrport, grace, **options):
        manage = str(settings.BASE_DIR / "manage.py")
        env = self._metrics_environment(addrport)
        # Each in a process group of its own: the terminal's Ctrl-C reaches this process
        # only, which stops each child exactly once (a second signal would make the worker
        # kill its jobs instead of letting them finish).
        children = {
            "worker": subprocess.Popen([sys.executable, manage, "worker", "--grace",
                                        str(grace)], start_new_session=True,
                                       env=env["worker"]),
            "server": subprocess.Popen([sys.executable, manage, "runserver", addrport],
                                       start_new_session=True, env=env["server"]),
        }
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        ended = None
        while stop["signal"] is None and ended is None:
            ended = next((name for name, p in children.items() if p.poll() is not None), None)
            time.sleep(0.2)
        if ended is not None:
            self.stderr.write(f"the {ended} stopped (exit {children[ended].returncode}): "
                              "stopping the rest")
        for process in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        for process in children.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if ended is not None:
            sys.exit(children[ended].returncode or 1)

    @staticmethod
    def _metrics_environment(addrport: str) -> dict[str, dict[str, str]]:
        """Unless the environment says otherwise, the worker's job processes keep their
        series (provider calls, spend) in a directory the server's /metrics merges in."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return {"worker": dict(os.environ), "server": dict(os.environ)}
        base = Path(tempfile.gettempdir()) / f"agent33-metrics-{addrport.replace(':', '-')}"
        for name in ("server", "worker"):
            (base / name).mkdir(parents=True, exist_ok=True)
            for stale in (base / name).glob("*.db"):
                stale.unlink()
        merged = ",".join(filter(None, [os.environ.get("AGENT33_METRICS_MERGE_DIRS", ""),
                                        str(base / "worker")]))
        return {
            "worker": {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(base / "worker")},
            "server": {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(base / "server"),
                       "AGENT33_METRICS_MERGE_DIRS": merged},
        }
