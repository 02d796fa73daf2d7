"""The project's WSGI application with outcome rollups switched off: the baseline of
bench/outcomes_ingest.py's "with ÷ without rollups" (never a deployment option)."""

from agent33.wsgi import application  # noqa: F401  (sets Django up)
from outcomes import services

services._rollups_add = lambda tenant, events: None
