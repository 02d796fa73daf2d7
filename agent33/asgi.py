"""The ASGI application: what gunicorn's uvicorn workers serve (`-k uvicorn_worker.UvicornWorker`,
README "Live hub stream"). An open hub stream (GET /v1/operations/hub/stream) then holds no
thread: it waits on the event loop for its broker's events (operations/stream.py)."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
application = get_asgi_application()

# As agent33/wsgi.py: what is loaded at start-up lives as long as the process, out of the
# collector's reach.
gc.collect()
gc.freeze()
