"""gunicorn reads this file from the working directory by default (`-c` names another).

- Logging: gunicorn's own lines use the service's format (JSON or text, see
  agent33.observability.logs); requests are logged by the service itself, so gunicorn
  builds no access lines of its own (ServiceLogger).
- Metrics: with PROMETHEUS_MULTIPROC_DIR set, every worker process keeps its series in a file
  in that directory (agent33.observability.metrics): the master empties it before the first
  worker starts, and marks each worker that exits as dead.
"""

import os

from gunicorn.glogging import Logger

from agent33.observability.logs import log_format_from_env, logging_config

logconfig_dict = logging_config(
    log_format=log_format_from_env(), level=os.environ.get("LOG_LEVEL", "INFO"), quiet={}
)


class ServiceLogger(Logger):
    """gunicorn's logger without its access lines. With `logconfig_dict` set, gunicorn builds
    an access record for every request (its atoms: headers, times, sizes) and hands it to
    `gunicorn.access`, where no handler writes it: 0.17 ms of a worker's CPU per request in
    `bench/ab.py --profile cpu`. The service's own access line (RequestContextMiddleware)
    carries the request id, tenant and duration."""

    def access(self, resp, req, environ, request_time):
        pass


logger_class = ServiceLogger


def on_starting(server):
    from agent33.observability.metrics import clear_multiprocess_dir

    clear_multiprocess_dir()


def child_exit(server, worker):
    from agent33.observability.metrics import mark_dead

    mark_dead(worker.pid)
