"""Real processes for the job tests: the embedded mode's environment on a fresh database of
this pass's kind (`scratch_database_url`), migrated as in production, and `manage.py`
commands run against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import ROOT, bench_env


@pytest.fixture
def embedded_env(scratch_database_url, tmp_path):
    """The environment of the embedded mode (no broker) on the scratch database, migrated."""
    env = bench_env(scratch_database_url, MEDIA_ROOT=str(tmp_path / "media"),
                    DJANGO_SETTINGS_MODULE="tests.jobs.worker_settings",
                    AGENT33_EVENTS_PER_MINUTE="0", LOG_LEVEL="INFO")
    for name in ("CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR", "REDIS_URL", "CACHE_URL"):
        env.pop(name, None)
    run_manage(env, "migrate", "-v0")
    return env


def run_manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


def query(env: dict[str, str], code: str):
    """Run `code` (which assigns `out`) in `manage.py shell` on the scratch database and
    return `out`, through JSON."""
    script = f"import json\n{code}\nprint('OUT=' + json.dumps(out, default=str))"
    stdout = run_manage(env, "shell", "-c", script)
    [line] = [line for line in stdout.splitlines() if line.startswith("OUT=")]
    return json.loads(line[4:])


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found
