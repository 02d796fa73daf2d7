"""Log records carry the request context; the console writes JSON or text lines.

`logging_config()` builds the LOGGING dict the settings use, for the web processes, commands
and (through the `setup_logging` signal, see tasks.py) Celery workers alike. Every record that
reaches the console handler passes `RequestContextFilter`, which adds `request_id`, `tenant`,
`token_prefix`, `method` and `path` (None outside a request or task); the access log line adds
`status` and `duration_ms`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from . import context

__all__ = [
    "CONTEXT_FIELDS",
    "JSON_FIELDS",
    "RequestContextFilter",
    "log_format_from_env",
    "logging_config",
]

CONTEXT_FIELDS = ("request_id", "tenant", "token_prefix", "method", "path")
# Every JSON line has these keys (null when they do not apply), so a log store can index
# them the same way for every line.
JSON_FIELDS = ("time", "level", "logger", "message", *CONTEXT_FIELDS, "status", "duration_ms")


def _scope_tenant() -> str | None:
    """The tenant scope of a task or command, for lines logged outside a request."""
    from agent33.tenancy.context import ALL_TENANTS, TenantSet, current_scope, has_scope

    if not has_scope():
        return None
    scope = current_scope()
    if scope is ALL_TENANTS:
        return "*"
    if isinstance(scope, TenantSet):
        return ",".join(sorted(scope))
    return scope.pk


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        bound = context.current()
        record.request_id = bound.request_id
        record.method = bound.method
        record.path = bound.path
        record.token_prefix = bound.token_prefix
        record.tenant = bound.tenant or _scope_tenant()
        for name in ("status", "duration_ms"):
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


def log_format_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """AGENT33_LOG_FORMAT, else json when DEBUG=0 and text when DEBUG=1 (its default). Read
    by the settings and by gunicorn.conf.py, whose own lines must match the service's."""
    debug = environ.get("DEBUG", "1").strip().lower() in {"", "1", "true", "yes", "on"}
    return environ.get("AGENT33_LOG_FORMAT") or ("text" if debug else "json")


def logging_config(*, log_format: str, level: str, quiet: dict[str, str]) -> dict[str, Any]:
    """`log_format` is "json" or "text"; `quiet` maps logger names to their levels."""
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "{levelname}{name}{message}{request_id}{tenant}{token_prefix}{method}"
            "{path}{status}{duration_ms}",
            "style": "{",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_context": {"()": RequestContextFilter}},
        "formatters": {log_format: formatters[log_format]},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults give these their own handlers (plain text, and twice with
            # DEBUG); here every line goes through the one console handler.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            # gunicorn's own lines (workers starting, timeouts) the same way; its access log
            # is left off, the service logs its own access lines.
            "gunicorn.error": {"handlers": [], "level": level, "propagate": True},
            **{name: {"level": lvl} for name, lvl in quiet.items()},
        },
    }
