"""The Celery app of the scaled-out mode (CELERY_BROKER_URL): workers run the jobs of
agent33/jobs by name, beat runs AGENT33_SCHEDULE. Without a broker nothing uses it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")

app = Celery("agent33")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Jobs register their Celery tasks when their modules are imported (the jobs app does that
# at start-up); autodiscovery makes a bare `celery worker` import them too.
app.autodiscover_tasks()
app.conf.include = [*app.conf.get("include", ()), "agent33.tasks"]

# Request ids into tasks and their log lines; workers' logging and metrics files.
import agent33.observability.tasks  # noqa: E402, F401
