"""Settings for the `celery worker` subprocesses of the worker tests: the project's settings
plus the test-only slow provider, a short broker visibility timeout so a job whose worker was
killed is redelivered within seconds instead of an hour, and a per-test-process key prefix."""

import os

from agent33.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Each pytest(-xdist) process gets its own key space, so parallel test processes never
    # consume each other's jobs.
    "global_keyprefix": os.environ.get("MULTIMODAL_TEST_BROKER_PREFIX", ""),
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
MULTIMODAL_PROVIDER_MODULES = ["tests.multimodal.slow_provider"]
