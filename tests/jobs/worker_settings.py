"""Settings of the processes the job tests start: the project's, plus the test-only app."""

from agent33.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.jobs.slow_jobs"]  # noqa: F405
