"""Log capture through the project's own formatter and filter, every logger at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.utils.module_loading import import_string

from agent33.observability.logs import RequestContextFilter, logging_config


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


def _formatter(log_format: str) -> logging.Formatter:
    spec = dict(logging_config(log_format=log_format, level="DEBUG", quiet={})
                ["formatters"][log_format])
    factory = spec.pop("()", None)
    if factory:
        return import_string(factory)(**spec)
    return logging.Formatter(spec["format"])


@pytest.fixture
def capture_logs() -> Iterator:
    """capture_logs("json" | "text") → CapturedLogs: every record of every logger (Django's
    request, server and security loggers, the database backend, httpx, Celery…), at DEBUG,
    formatted exactly as the console handler formats it."""
    handlers: list[logging.Handler] = []
    saved_levels: dict[logging.Logger, int] = {}
    attached: list[logging.Logger] = []

    def start(log_format: str = "json") -> CapturedLogs:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_formatter(log_format))
        handler.addFilter(RequestContextFilter())
        handler.setLevel(logging.DEBUG)
        handlers.append(handler)
        loggers = [logging.getLogger()] + [
            logger for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger)
        ]
        for logger in loggers:
            saved_levels.setdefault(logger, logger.level)
            logger.setLevel(logging.DEBUG)
            if logger is logging.getLogger() or not logger.propagate:
                logger.addHandler(handler)
                attached.append(logger)
        for name in ("django.request", "django.server", "django.security", "django.db.backends",
                     "httpx", "httpcore", "celery", "axes"):
            logger = logging.getLogger(name)  # created now if nothing has used it yet
            saved_levels.setdefault(logger, logger.level)
            logger.setLevel(logging.DEBUG)
        return CapturedLogs(stream)

    yield start
    for logger in attached:
        for handler in handlers:
            logger.removeHandler(handler)
    for logger, level in saved_levels.items():
        logger.setLevel(level)
