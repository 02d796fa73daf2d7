"""gunicorn reads this file from the working directory by default (`-c` names another).

With PROMETHEUS_MULTIPROC_DIR set, metrics are kept in one file per worker process in that
directory (agent33.observability.metrics): the master empties it before the first worker
starts, and marks each worker that exits as dead.
"""


def on_starting(server):
    from agent33.observability.metrics import clear_multiprocess_dir

    clear_multiprocess_dir()


def child_exit(server, worker):
    from agent33.observability.metrics import mark_dead

    mark_dead(worker.pid)
