"""`manage.py worker`: the embedded mode's background worker (agent33/jobs/worker.py)."""

from django.core.management.base import BaseCommand, CommandError

from agent33.jobs.worker import Worker, run_ready_jobs


class Command(BaseCommand):
    help = ("Run background jobs from the database queue and the periodic schedule "
            "(the embedded mode; with CELERY_BROKER_URL, Celery workers and beat do this).")

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=4,
                            help="jobs run at once, each in a process of its own (default 4)")
        parser.add_argument("--queues", default="",
                            help="comma-separated queue names to take jobs from (default: all)")
        parser.add_argument("--interval", type=float, default=1.0,
                            help="seconds between looks at an idle queue where nothing wakes "
                                 "the worker (SQLite; PostgreSQL is woken by NOTIFY)")
        parser.add_argument("--grace", type=float, default=10.0,
                            help="on SIGTERM/Ctrl-C, seconds running jobs may finish in "
                                 "before they are killed and queued again (default 10)")
        parser.add_argument("--niceness", type=int, default=10,
                            help="CPU priority of the jobs' processes (default 10: web "
                                 "processes on the same host go first)")
        parser.add_argument("--no-schedule", action="store_true",
                            help="do not run the periodic schedule (another worker does)")
        parser.add_argument("--drain", action="store_true",
                            help="run the jobs that are ready now in this process, then exit")

    def handle(self, *args, concurrency, queues, interval, grace, niceness, no_schedule,
               drain, **options):
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if interval <= 0 or grace < 0:
            raise CommandError("--interval must be positive and --grace not negative")
        if drain:
            outcomes = run_ready_jobs()
            self.stdout.write(f"ran {len(outcomes)} jobs")
            return
        Worker(concurrency=concurrency, queues=[q for q in queues.split(",") if q],
               interval=interval, grace=grace, niceness=niceness,
               schedule=not no_schedule).run()
