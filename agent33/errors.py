"""Domain errors raised by services; the API's one handler turns them into the error format.

Services raise these instead of DRF exceptions so the same code serves the API, the admin,
commands and tasks.
"""

from __future__ import annotations

__all__ = [
    "DomainError",
    "Forbidden",
    "InvalidInput",
    "LimitReached",
    "NotFound",
    "StateConflict",
]


class DomainError(Exception):
    """`field` names the one field at fault; `errors` ({field: [messages]}) several."""

    status_code = 400
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None,
                 errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors
        if code:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(DomainError):
    """400: the input breaks a rule (a policy limit, a bad reference)."""


class Forbidden(DomainError):
    """403: the caller may reach this object but not make this change (a move that needs a
    scope or permission the caller lacks); `detail` names what is missing."""

    status_code = 403
    code = "missing_scope"


class StateConflict(DomainError):
    """409: the object's current state forbids the request."""

    status_code = 409
    code = "invalid_transition"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class LimitReached(DomainError):
    """429: a limit refuses the request for now; `retry_after` seconds say when to retry."""

    status_code = 429
    code = "limit_reached"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None):
        super().__init__(detail, code=code)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
