"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process (settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")

app = Celery("agent33")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project-level health task lives outside any app, so name it explicitly.
app.conf.include = [*app.conf.get("include", ()), "agent33.tasks"]

# Request ids into tasks and their log lines; workers' logging and metrics files.
import agent33.observability.tasks  # noqa: E402, F401
