"""The current tenant of this request, task or command.

It is set once, in one place per entry point: after API authentication, at the top of a task,
in a command. Nothing reads it from a request body. Unset means "no tenant": tenant-owned
querysets then refuse to run (fail closed). Operator access to every tenant is a separate,
explicit value, never the absence of one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .models import Tenant

__all__ = [
    "ALL_TENANTS",
    "TenantScopeMissing",
    "TenantSet",
    "all_tenants_scope",
    "current_scope",
    "has_scope",
    "reset_scope",
    "set_scope",
    "tenant_scope",
]


class _AllTenants:
    """Sentinel for operator access; its own type so it can never be confused with None."""

    def __repr__(self) -> str:
        return "ALL_TENANTS"


ALL_TENANTS: Final = _AllTenants()


class TenantSet(frozenset):
    """Several tenants at once: a non-superuser staff member's granted tenants."""

    def __repr__(self) -> str:
        return f"TenantSet({sorted(self)})"

_UNSET: Final = object()

_scope: contextvars.ContextVar[object] = contextvars.ContextVar("agent33_tenant", default=_UNSET)


class TenantScopeMissing(RuntimeError):
    """A tenant-owned model was queried with no tenant scope set."""


def current_scope() -> Tenant | TenantSet | _AllTenants:
    value = _scope.get()
    if value is _UNSET:
        raise TenantScopeMissing(
            "No tenant scope is set: wrap the code in tenant_scope(tenant) or "
            "all_tenants_scope(), or use the explicit Model.all_tenants manager."
        )
    return value  # type: ignore[return-value]


def has_scope() -> bool:
    return _scope.get() is not _UNSET


def set_scope(value: Tenant | TenantSet | _AllTenants | None) -> contextvars.Token:
    if value is None:
        raise ValueError("None is never a tenant; use ALL_TENANTS for operator access.")
    return _scope.set(value)


def clear_scope() -> contextvars.Token:
    return _scope.set(_UNSET)


def reset_scope(token: contextvars.Token) -> None:
    _scope.reset(token)


@contextmanager
def tenant_scope(tenant: Tenant | TenantSet | _AllTenants) -> Iterator[None]:
    token = set_scope(tenant)
    try:
        yield
    finally:
        reset_scope(token)


@contextmanager
def all_tenants_scope() -> Iterator[None]:
    with tenant_scope(ALL_TENANTS):
        yield
