from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "agent33.jobs"
    label = "jobs"
    verbose_name = "Background jobs"

    def ready(self) -> None:
        # Every app's jobs live in its tasks.py; importing them registers them by name, so
        # any process (web, worker, Celery) can queue or run any job.
        from django.utils.module_loading import autodiscover_modules

        import agent33.tasks  # noqa: F401

        from . import metrics  # noqa: F401  (registers the agent33_jobs collector)

        autodiscover_modules("tasks")
