"""Settings of the Celery worker and beat the scaled-out job tests start: the job tests'
settings, the budget sweep every second, and a per-test-process Redis key prefix."""

import os

from tests.jobs.worker_settings import *  # noqa: F403

AGENT33_SCHEDULE = {"expire-autonomy-budgets": {"job": "operations.tasks.expire_budgets",
                                                "every": 1}}
CELERY_BEAT_SCHEDULE = {name: {"task": entry["job"], "schedule": float(entry["every"])}
                        for name, entry in AGENT33_SCHEDULE.items()}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": os.environ.get("JOBS_TEST_BROKER_PREFIX", ""),
    "visibility_timeout": 5,
}
