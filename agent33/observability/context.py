"""What the current request (or the task it enqueued) is, for log lines and task headers.

One contextvar per request or task, set by `RequestContextMiddleware` and, in Celery
workers, by the task signals in `agent33.observability.tasks`. Log records read it through
`RequestContextFilter`, so any logger anywhere in the request carries the request id without
being passed it.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass, replace

__all__ = [
    "RequestContext",
    "bind",
    "current",
    "new_request_id",
    "reset",
    "update",
    "valid_request_id",
]

# DESIGN §7.5: a caller's id is kept when it is 1-128 characters of [A-Za-z0-9._-]; anything
# else (empty, too long, spaces, quotes, newlines a log line could be split with) is replaced.
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    tenant: str | None = None  # the token's tenant slug, "*" for an operator token
    token_prefix: str | None = None


_EMPTY = RequestContext()
_context: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "agent33_request_context", default=_EMPTY
)


def valid_request_id(value: str | None) -> bool:
    return value is not None and _VALID_ID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current() -> RequestContext:
    return _context.get()


def bind(context: RequestContext) -> contextvars.Token:
    return _context.set(context)


def reset(token: contextvars.Token) -> None:
    _context.reset(token)


def update(**changes: str | None) -> None:
    """Add what is learnt during the request (tenant and token after authentication)."""
    _context.set(replace(_context.get(), **changes))
