"""Origins for tests that call services directly (the API and admin build theirs from the
request: operations.transitions.origin_of)."""

from __future__ import annotations

from agent33.auth.scopes import ADMIN
from operations.choices import ChangeCause, ChangePath
from operations.transitions import Origin


def operator(actor: str = "token:test", *, path: str = ChangePath.API,
             scopes: frozenset[str] = frozenset({ADMIN})) -> Origin:
    """Someone acting on a process from outside, allowed every move."""
    return Origin(actor=actor, path=path, cause=ChangeCause.OPERATOR, scopes=scopes)


def runtime(actor: str = "token:runtime", *, scopes: frozenset[str] = frozenset({ADMIN})
            ) -> Origin:
    """The agent runtime reporting through the API: the move decides the cause."""
    return Origin(actor=actor, path=ChangePath.API, scopes=scopes)
