"""The only place scope strings are written."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ADMIN",
    "ALL_SCOPES",
    "BUDGETS_APPROVE",
    "METRICS_READ",
    "MULTIMODAL_ADMIN",
    "MULTIMODAL_READ",
    "MULTIMODAL_WRITE",
    "OPERATOR_ONLY_SCOPES",
    "OUTCOMES_READ",
    "OUTCOMES_WRITE",
    "WEBHOOKS_READ",
    "WEBHOOKS_WRITE",
    "WORKFLOWS_EXECUTE",
    "WORKFLOWS_READ",
    "WORKFLOWS_WRITE",
    "grants",
    "invalid_scopes",
    "operator_only_scopes",
]

WORKFLOWS_READ = "workflows:read"
WORKFLOWS_WRITE = "workflows:write"
WORKFLOWS_EXECUTE = "workflows:execute"
# Approving an autonomy budget (draft or pending approval → active) is its own right: a
# token that writes records must not approve what it wrote.
BUDGETS_APPROVE = "budgets:approve"
MULTIMODAL_READ = "multimodal:read"
MULTIMODAL_WRITE = "multimodal:write"
MULTIMODAL_ADMIN = "multimodal:admin"
OUTCOMES_READ = "outcomes:read"
OUTCOMES_WRITE = "outcomes:write"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"  # endpoints (URLs, secrets) and replays
METRICS_READ = "metrics:read"  # every tenant's numbers at once: all-tenants tokens only
ADMIN = "admin"

ALL_SCOPES: tuple[str, ...] = (
    WORKFLOWS_READ,
    WORKFLOWS_WRITE,
    WORKFLOWS_EXECUTE,
    BUDGETS_APPROVE,
    MULTIMODAL_READ,
    MULTIMODAL_WRITE,
    MULTIMODAL_ADMIN,
    OUTCOMES_READ,
    OUTCOMES_WRITE,
    WEBHOOKS_READ,
    WEBHOOKS_WRITE,
    METRICS_READ,
    ADMIN,
)
# Scopes that read or act across tenants: a tenant's token is never given them (token_issue
# refuses), and their routes refuse tenant tokens even with `admin`.
OPERATOR_ONLY_SCOPES: frozenset[str] = frozenset({METRICS_READ})
FAMILIES: frozenset[str] = frozenset(s.split(":")[0] for s in ALL_SCOPES if ":" in s)


def grants(granted: Iterable[str], required: str) -> bool:
    """`admin` grants everything; `family:*` grants that family; otherwise exact match."""
    family = required.split(":", 1)[0]
    return any(scope in (ADMIN, required, f"{family}:*") for scope in granted)


def invalid_scopes(scopes: Iterable[str]) -> list[str]:
    """Scopes that are neither known nor a known family wildcard."""
    valid = set(ALL_SCOPES) | {f"{family}:*" for family in FAMILIES}
    return [scope for scope in scopes if scope not in valid]


def operator_only_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes among `scopes` that only an all-tenants token may hold (wildcards too)."""
    wildcards = {f"{scope.split(':')[0]}:*" for scope in OPERATOR_ONLY_SCOPES}
    return [scope for scope in scopes if scope in OPERATOR_ONLY_SCOPES or scope in wildcards]
