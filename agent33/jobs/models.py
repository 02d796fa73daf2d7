"""What the embedded worker keeps besides the jobs themselves (django-tasks-db's table).

- `WorkerHeartbeat`: each running `manage.py worker` refreshes its row every few seconds. A
  job left RUNNING by a worker whose heartbeat stopped (SIGKILL, power loss) is handed back
  to the queue by any live worker: the one thing django-tasks-db cannot know by itself.
- `ScheduleState`: when each periodic job is next due. Whichever worker moves `next_run_at`
  forward (a conditional UPDATE) queues that run, so several workers never double it.
"""

from django.db import models


class WorkerHeartbeat(models.Model):
    worker_id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "background worker"

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.hostname}:{self.pid})"


class ScheduleState(models.Model):
    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True)

    class Meta:
        verbose_name = "periodic job"

    def __str__(self) -> str:
        return self.name
