"""Scope checks declared per view action.

A view declares `required_scopes`, either one scope for every action or a mapping from
action (viewsets) or lower-case HTTP method (APIViews) to a scope. `AUTHENTICATED` means any
valid token will do. An action without a declaration is refused: new code cannot forget.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from .scopes import grants

__all__ = [
    "AUTHENTICATED",
    "HasRequiredScopes",
    "MissingScope",
    "OperatorOnly",
    "required_scope_for",
]

AUTHENTICATED = "authenticated"


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


class UndeclaredScope(exceptions.PermissionDenied):
    default_code = "scope_not_declared"


def required_scope_for(view, request) -> str | None:
    declared = getattr(view, "required_scopes", None)
    if isinstance(declared, str):
        return declared
    if isinstance(declared, dict):
        action = getattr(view, "action", None)
        if action and action in declared:
            return declared[action]
        method = request.method.lower()
        if method == "head" and "head" not in declared:
            method = "get"  # Django answers HEAD with get()
        return declared.get(method)
    return None


class HasRequiredScopes(BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS":
            return request.user is not None
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            raise exceptions.NotAuthenticated()
        required = required_scope_for(view, request)
        if required is None:
            raise UndeclaredScope("This endpoint declares no scope and is closed.")
        if required == AUTHENTICATED:
            return True
        if not grants(principal.scopes, required):
            raise MissingScope(f"Missing required scope: {required}")
        return True


class OperatorTokenRequired(exceptions.PermissionDenied):
    default_code = "operator_token_required"


class OperatorOnly(BasePermission):
    """After HasRequiredScopes: the route reads every tenant's data, so a tenant's token is
    refused whatever its scopes (`admin` included)."""

    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS":
            return request.user is not None
        if not request.user.is_operator:
            raise OperatorTokenRequired(
                "This endpoint covers every tenant: it needs an all-tenants (operator) token; "
                "a tenant's token is refused whatever its scopes."
            )
        return True
