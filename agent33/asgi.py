"""The ASGI application: what gunicorn's uvicorn workers serve (`-k uvicorn_worker.UvicornWorker`,
README "Live hub stream"). An open hub stream then holds no thread: it waits on the event loop
for its broker's events (operations/stream.py).

Deployed beside the WSGI API (compose's `stream` service, behind the proxy that sends it the
two stream paths), it runs with AGENT33_ASGI_STREAM_ONLY=1 and answers every other path 404
before reading anything: the synchronous API stays on WSGI, where it costs less
(bench/asgi_vs_wsgi.py), and bodies are only ever read by the WSGI server's limits.
"""

import gc
import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
django_application = get_asgi_application()

STREAM_PATHS = frozenset({
    "/v1/operations/hub/stream", "/admin/operations/hub/stream/", "/healthz", "/readyz",
})
_NOT_HERE = json.dumps({"detail": "Not found: this server serves the hub streams only.",
                        "code": "not_found"}).encode()


async def stream_only(scope, receive, send):
    if scope["type"] == "http" and scope["path"] not in STREAM_PATHS:
        await send({"type": "http.response.start", "status": 404, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
            (b"content-length", str(len(_NOT_HERE)).encode())]})
        await send({"type": "http.response.body", "body": _NOT_HERE})
        return
    await django_application(scope, receive, send)


application = (stream_only if os.environ.get("AGENT33_ASGI_STREAM_ONLY") == "1"
               else django_application)

# As agent33/wsgi.py: what is loaded at start-up lives as long as the process, out of the
# collector's reach.
gc.collect()
gc.freeze()
