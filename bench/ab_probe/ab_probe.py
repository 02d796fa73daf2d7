"""The WSGI entry point of bench/ab.py's servers: the checkout's own application, and one
extra path that answers which directories this process's code was imported from (and the
worker's process id, for a profiler to attach to).

bench/ab.py serves two checkouts from one virtualenv, each through PYTHONPATH, so an import
that resolved to the wrong tree (the editable install points at the current checkout) would
compare a version with itself. The bench asks every server this path before it measures.
This directory holds only this module, so adding it to PYTHONPATH shadows nothing.
"""

import importlib
import json
import os
from pathlib import Path

from agent33.wsgi import application as checkout_application

PROBE_PATH = "/__ab__/code"
PACKAGES = ("agent33", "operations", "outcomes", "multimodal")

_CODE = {
    name: str(Path(importlib.import_module(name).__file__).resolve().parent.parent)
    for name in PACKAGES
}


def application(environ, start_response):
    if environ.get("PATH_INFO") == PROBE_PATH:
        # The process id is read here, not at import: gunicorn may load the app before forking.
        answer = json.dumps({"code": _CODE, "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]
    return checkout_application(environ, start_response)
