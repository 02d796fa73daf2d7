"""`manage.py worker`: runs the database queue and the periodic schedule (embedded mode).

One supervisor process claims jobs (on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED`, so
any number of workers share the queue; on SQLite the claim is an exclusive transaction,
and one worker is what SQLite is for) and runs each try in a forked child of its own:

- the child is a process group of its own and dies with the supervisor (PR_SET_PDEATHSIG),
  so a time limit or a shutdown kills the job AND anything it started (tesseract), and a
  killed supervisor leaves no job running behind it;
- it runs at a lower CPU priority (`--niceness`), so web processes on the same host answer
  first;
- the child records its own outcome: success, or a failure that is tried again after the
  job's backoff, or FAILED after its last try. A child that dies without recording one
  (killed, time limit) is recorded by the supervisor;
- the supervisor refreshes its heartbeat; a job left RUNNING by a worker whose heartbeat
  stopped (SIGKILL, a lost host) goes back to the queue, so it completes after a restart.

Between jobs the supervisor sleeps in `select()`: on PostgreSQL a NOTIFY from `enqueue`
wakes it at once, elsewhere it looks again every `--interval` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.tasks.base import TaskResultStatus
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.json import normalize_json
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction

from agent33.observability.metrics import mark_dead

from .backends import exception_fields, run_job, split_meta
from .models import WorkerHeartbeat
from .processes import die_with_parent
from .registry import Job, Retry

__all__ = ["Worker", "record_failure", "run_ready_jobs"]

logger = logging.getLogger("agent33.jobs")

@dataclass
class _Running:
    row_id: str
    name: str
    time_limit: float
    started: float = field(default_factory=time.monotonic)
    timed_out: bool = False


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# --- outcomes (shared by the child, the supervisor and run_ready_jobs) --------------------


def _job_of(row: DBTaskResult) -> Job | None:
    try:
        task = row.task
    except Exception:  # the job's code is gone (renamed, removed): it can only fail
        return None
    return task if isinstance(task, Job) else None


def _time_limit_of(row: DBTaskResult, job: Job | None) -> float:
    meta = split_meta(row.args_kwargs.get("kwargs") or {})[1]
    return float(meta.get("time_limit") or (job.time_limit if job else 60.0))


def record_failure(row: DBTaskResult, fields: dict[str, str], *, retry_after: float | None = None,
                   lost: bool = False) -> str:
    """Record a failed try of a RUNNING job: back to the queue after the job's backoff (at
    once when its worker was `lost`, after `retry_after` when the job asked), or FAILED
    after its last try. Returns "retry", "failed" or "gone" (the row had moved on)."""
    job = _job_of(row)
    attempts = len(row.worker_ids)
    now = timezone.now()
    if job is not None and attempts < job.max_attempts:
        delay = 0.0 if lost else (retry_after if retry_after is not None
                                  else job.delay_before(attempts))
        changes: dict[str, Any] = {"status": TaskResultStatus.READY,
                                   "run_after": now + timedelta(seconds=delay)}
        outcome = "retry"
    else:
        changes = {"status": TaskResultStatus.FAILED, "finished_at": now}
        outcome = "failed"
    updated = DBTaskResult.objects.filter(pk=row.pk, status=TaskResultStatus.RUNNING).update(
        **changes, **fields)
    if not updated:
        return "gone"
    log = logger.error if outcome == "failed" else logger.warning
    log("job %s (%s) try %d of %s failed: %s; %s", job.job_name if job else row.task_path,
        row.pk, attempts,
        job.max_attempts if job else "?", fields["exception_class_path"],
        "no tries left" if outcome == "failed" else "queued again")
    return outcome


def _lost_fields(reason: str, kind: str = "WorkerLost") -> dict[str, str]:
    """A failure with no exception of its own: the job's process died, or its code is gone."""
    return {"exception_class_path": f"agent33.jobs.{kind}", "traceback": reason}


def execute(row: DBTaskResult) -> str:
    """Run one claimed try in this process and record its outcome."""
    job = _job_of(row)
    if job is None:
        return record_failure(row, _lost_fields(f"no job is importable at {row.task_path}",
                                                kind="JobMissing"))
    try:
        value = run_job(job, row.args_kwargs.get("kwargs") or {})
        value = normalize_json(value)
    except Exception as exc:
        return record_failure(row, exception_fields(exc),
                              retry_after=exc.after if isinstance(exc, Retry) else None)
    DBTaskResult.objects.filter(pk=row.pk, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now(), return_value=value,
        exception_class_path="", traceback="")
    return "successful"


def claim(worker_id: str, queues: list[str] | None = None) -> DBTaskResult | None:
    ready = DBTaskResult.objects.ready().filter(backend_name="default")
    if queues:
        ready = ready.filter(queue_name__in=queues)
    if not ready.exists():  # an idle queue costs a read, not a lock (SQLite's is exclusive)
        return None
    with exclusive_transaction(ready.db):
        row = ready.get_locked()  # FOR UPDATE SKIP LOCKED where the database has it
        if row is not None:
            row.claim(worker_id)
    return row


def run_ready_jobs(limit: int = 1000) -> list[str]:
    """Run the jobs that are ready, one after the other in this process, exactly as the
    worker's children do (outcomes recorded, failures queued again): for tests and
    `manage.py worker --drain`."""
    worker_id = f"inline-{get_random_string(12)}"
    outcomes = []
    for _ in range(limit):
        row = claim(worker_id)
        if row is None:
            break
        outcomes.append(execute(row))
    return outcomes


# --- the supervisor ----------------------------------------------------------------------


class _Listener:
    """A connection of its own LISTENing for new jobs (PostgreSQL). Never closed around a
    fork: children do not touch it, and they leave with os._exit."""

    def __init__(self) -> None:
        self.wrapper = connections.create_connection("default")
        self.wrapper.ensure_connection()
        with self.wrapper.cursor() as cursor:
            cursor.execute('LISTEN "agent33:jobs"')

    def fileno(self) -> int:
        return self.wrapper.connection.fileno()

    def drain(self) -> None:
        for _ in self.wrapper.connection.notifies(timeout=0.001):
            pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.wrapper.close()


class Worker:
    def __init__(self, *, concurrency: int = 4, queues: list[str] | None = None,
                 interval: float = 1.0, grace: float = 10.0, niceness: int = 10,
                 schedule: bool = True, worker_id: str | None = None) -> None:
        self.concurrency = max(1, concurrency)
        self.queues = queues or None
        self.interval = interval
        self.grace = grace
        self.niceness = niceness
        self.schedule = schedule
        self.worker_id = worker_id or f"{socket.gethostname()[:40]}-{get_random_string(12)}"
        self.heartbeat_every = _setting("AGENT33_WORKER_HEARTBEAT_SECONDS", 2.0)
        self.stale_after = _setting("AGENT33_WORKER_STALE_SECONDS", 15.0)
        self.children: dict[int, _Running] = {}
        self.stopping = False
        self.stop_now = False
        self.pid = os.getpid()

    # signals ------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() when a job ends
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_stop(self, signum, frame) -> None:
        if self.stopping:
            self.stop_now = True
        self.stopping = True

    # the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        from agent33.observability.metrics import clear_multiprocess_dir

        # With PROMETHEUS_MULTIPROC_DIR (and that directory in the web's
        # AGENT33_METRICS_MERGE_DIRS), the series the jobs' processes record (provider
        # calls, spend) reach /metrics, as a Celery worker's do.
        clear_multiprocess_dir()
        self._install_signals()
        self._beat()
        self._recover()
        listening = connections["default"].vendor == "postgresql"
        # The listener talks to the driver directly: its errors are the driver's own.
        lost_database = (DatabaseError, connections["default"].Database.Error)
        listener = _Listener() if listening else None
        logger.info("worker %s started: %d slots, queues %s, schedule %s", self.worker_id,
                    self.concurrency, ",".join(self.queues or ["*"]),
                    "on" if self.schedule else "off")
        next_beat = next_schedule = 0.0
        try:
            while not self.stopping:
                try:
                    if listener is None and listening:
                        listener = _Listener()
                    self._reap_children()
                    self._enforce_time_limits()
                    now = time.monotonic()
                    if now >= next_beat:
                        self._beat()
                        self._recover()
                        next_beat = now + self.heartbeat_every
                    if self.schedule and now >= next_schedule:
                        from .schedule import queue_due

                        queue_due()
                        next_schedule = now + 1.0
                    started = self._fill_slots()
                    if not started and not self.stopping:
                        self._sleep(listener)
                except lost_database:
                    # The database restarted or dropped us: reconnect, and look again soon.
                    logger.exception("worker %s: database error; trying again", self.worker_id)
                    connections.close_all()
                    if listener is not None:
                        listener.close()
                        listener = None
                    time.sleep(self.interval)
        finally:
            self._shutdown()
            if listener is not None:
                listener.close()

    def _sleep(self, listener: _Listener | None) -> None:
        waiting = [self._wake_r] + ([listener] if listener is not None else [])
        timeout = self.interval
        if self.children:
            # Wake in time for the nearest time limit.
            now = time.monotonic()
            nearest = min(r.started + r.time_limit - now for r in self.children.values())
            timeout = max(0.05, min(timeout, nearest))
        readable, _, _ = select.select(waiting, [], [], timeout)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        if listener is not None and listener in readable:
            listener.drain()

    def _fill_slots(self) -> int:
        started = 0
        while not self.stopping and len(self.children) < self.concurrency:
            row = claim(self.worker_id, self.queues)
            if row is None:
                break
            self._start(row)
            started += 1
        return started

    def _start(self, row: DBTaskResult) -> None:
        job = _job_of(row)
        running = _Running(row_id=str(row.pk), name=job.job_name if job else row.task_path,
                           time_limit=_time_limit_of(row, job))
        connections.close_all()  # a child must never share this process's sockets
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                self._become_child()
                execute(row)
                code = 0
            except BaseException:
                logger.exception("job %s crashed its process", row.pk)
            finally:
                with contextlib.suppress(Exception):
                    connections.close_all()
                os._exit(code)
        self.children[pid] = running
        logger.info("job %s (%s) started in process %d", running.name, running.row_id, pid)

    def _become_child(self) -> None:
        os.setpgid(0, 0)
        die_with_parent(expected_parent=self.pid)
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.niceness:
            with contextlib.suppress(OSError):
                os.nice(self.niceness)
        random.seed()  # jitter differs between children

    def _reap_children(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            running = self.children.pop(pid, None)
            mark_dead(pid)
            # Whatever the job started and left behind (its process group) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if running is None:
                continue
            if running.timed_out:
                reason = f"time limit of {running.time_limit:g} s exceeded: its processes " \
                         "were killed"
            elif os.WIFSIGNALED(status):
                reason = f"its process was killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                reason = f"its process exited with code {os.WEXITSTATUS(status)}"
            self._record_if_unrecorded(running, reason)

    def _record_if_unrecorded(self, running: _Running, reason: str) -> None:
        row = DBTaskResult.objects.filter(pk=running.row_id,
                                          status=TaskResultStatus.RUNNING).first()
        if row is not None and row.worker_ids and row.worker_ids[-1] == self.worker_id:
            record_failure(row, _lost_fields(f"job {running.name}: {reason}"))

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for pid, running in self.children.items():
            if not running.timed_out and now - running.started > running.time_limit:
                logger.error("job %s (%s) passed its time limit of %g s: killing it",
                             running.name, running.row_id, running.time_limit)
                running.timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def _beat(self) -> None:
        now = timezone.now()
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={"hostname": socket.gethostname()[:255], "pid": self.pid,
                      "seen_at": now},
            create_defaults={"hostname": socket.gethostname()[:255], "pid": self.pid,
                             "seen_at": now, "started_at": now},
        )

    def _recover(self) -> None:
        """Jobs left RUNNING by workers that are gone go back to the queue."""
        now = timezone.now()
        heartbeats = WorkerHeartbeat.objects.filter(
            seen_at__gte=now - timedelta(seconds=self.stale_after))
        hostname = socket.gethostname()[:255]
        live = {beat.worker_id for beat in heartbeats
                if beat.hostname != hostname or _pid_alive(beat.pid)}
        live.add(self.worker_id)
        for row in DBTaskResult.objects.running().filter(backend_name="default"):
            if not row.worker_ids or row.worker_ids[-1] not in live:
                record_failure(row, _lost_fields(
                    f"its worker {row.worker_ids[-1] if row.worker_ids else '?'} stopped "
                    "while running it (killed or lost); queued again"), lost=True)
        WorkerHeartbeat.objects.filter(seen_at__lt=now - timedelta(days=1)).delete()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + (0 if self.stop_now else self.grace)
        if self.children:
            logger.warning("worker %s stopping: %d jobs running, waiting up to %g s",
                           self.worker_id, len(self.children), self.grace)
        while self.children and time.monotonic() < deadline and not self.stop_now:
            self._reap_children()
            time.sleep(0.05)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        while self.children:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            running = self.children.pop(pid, None)
            if running is not None:
                row = DBTaskResult.objects.filter(pk=running.row_id,
                                                  status=TaskResultStatus.RUNNING).first()
                if row is not None:
                    record_failure(row, _lost_fields(
                        f"job {running.name}: the worker stopped while it ran"), lost=True)
        WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()
        logger.info("worker %s stopped", self.worker_id)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
