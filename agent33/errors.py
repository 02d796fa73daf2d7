"""Domain errors raised by services; the API's one handler turns them into the error format.

Services raise these instead of DRF exceptions so the same code serves the API, the admin,
commands and tasks.
"""

from __future__ import annotations

__all__ = ["DomainError", "InvalidInput", "NotFound", "StateConflict"]


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code:
            self.code = code


class InvalidInput(DomainError):
    """400: the input breaks a rule (a policy limit, a bad reference)."""


class StateConflict(DomainError):
    """409: the object's current state forbids the request."""

    status_code = 409
    code = "invalid_transition"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
