"""`Model.all_tenants` (the manager that skips the tenant scope) is used only where a job
really spans tenants, and each such place is listed here with its reason.

Every non-test, non-migration module of the project is parsed (ast); each `.all_tenants`
attribute is attributed to its module and innermost enclosing function or class. Code held in
string literals (scripts that run code in a subprocess) is parsed and checked too. A use not in
ALLOWED fails, and so does an entry of ALLOWED that matches nothing, so the list stays exact.
Everything else reads through `Model.objects`, which fails closed without a tenant scope.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent33", "operations", "multimodal", "outcomes", "webhooks", "scripts", "bench")

# (module, enclosing function or class, dotted; "<module>" at top level) → why it may span
# tenants.
ALLOWED: dict[tuple[str, str], str] = {
    ("multimodal.services.execution", "reap_timeouts"):
        "the reaper's candidate search spans tenants; it ends each request in that "
        "request's own tenant scope",
    ("multimodal.management.commands.rotate_provider_keys", "Command.handle"):
        "operator command re-encrypting every tenant's stored provider keys",
    ("outcomes.services", "outcome_counts_rebuild"):
        "maintenance: recomputes the summary counts of one or every tenant from the events",
    ("outcomes.services", "trend_snapshots_rebuild"):
        "maintenance: re-evaluates the trend snapshots of one or every tenant (each tenant's "
        "trends are read in its own scope)",
    ("operations.metrics", "collect"):
        "GET /metrics reports the whole service (operator token): counts of every tenant",
    ("multimodal.metrics", "collect"):
        "GET /metrics reports the whole service (operator token): counts of every tenant",
    ("outcomes.metrics", "collect"):
        "GET /metrics reports the whole service (operator token): counts of every tenant",
    ("webhooks.metrics", "collect"):
        "GET /metrics reports the whole service (operator token): counts of every tenant",
    ("webhooks.delivery", "sweep"):
        "the periodic sweep finds due and stuck deliveries in every tenant; each drain it "
        "queues is queued in (and runs in) its endpoint's tenant scope",
    ("operations.changelog", "record"):
        "the live hub's log rows are inserted with the tenant of each changed process, "
        "whatever scope the change runs in (sweeps and jobs change many tenants' rows)",
    ("operations.changelog", "prune_events"):
        "maintenance: the live hub's log is pruned by age for every tenant at once",
    ("operations.stream", "Broker._deliver_batch"):
        "the live hub's broker reads each committed change once for every open stream of its "
        "process and hands it only to the streams whose scope may see it",
    ("operations.sources", "ModelProcessSource.rows"):
        "the live hub's broker reads each changed process once for every stream (filtered "
        "per stream's scope afterwards)",
    ("multimodal.hub_source", "MultimodalRequestSource.rows"):
        "the live hub's broker reads each changed request once for every stream (filtered "
        "per stream's scope afterwards)",
    ("operations.stream", "_max_seq"):
        "the last event id given (a number, no tenant's data): where a stream's live part "
        "starts",
    ("operations.stream", "_catch_up"):
        "whether the log still holds everything after the client's id (the oldest id and "
        "time, no tenant's data); the events replayed are read through the scoped manager",
    ("scripts.fuzz", "<module>"):
        "the fuzz harness lists both fuzz tenants' object ids for the fuzzer",
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts or "tests" in parts or parts[-1].startswith("test_"):
                continue
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield module, path


def _uses(tree: ast.AST, scope: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """(enclosing scope, line) of every `.all_tenants` in `tree`, including in code held in
    string literals that parse as Python."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _uses(node, (*scope, node.name))
            continue
        if isinstance(node, ast.Attribute) and node.attr == "all_tenants":
            yield ".".join(scope) or "<module>", node.lineno
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "all_tenants" in node.value:
            try:
                embedded = ast.parse(node.value)
            except SyntaxError:
                pass  # prose (a docstring, a message), not code
            else:
                for where, _ in _uses(embedded, scope):
                    yield where, node.lineno
        yield from _uses(node, scope)


def _all_uses() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for module, path in _modules():
        for where, line in _uses(ast.parse(path.read_text(), filename=str(path))):
            found.setdefault((module, where), []).append(
                f"{path.relative_to(ROOT)}:{line}"
            )
    return found


def test_all_tenants_is_used_only_where_the_allow_list_says_why():
    unlisted = {key: lines for key, lines in _all_uses().items() if key not in ALLOWED}
    assert not unlisted, (
        "Model.all_tenants bypasses the tenant scope. Use Model.objects under the current "
        "scope (tenant_scope(...) in tasks and commands), or, for a job that truly spans "
        f"tenants, add an entry with its reason to ALLOWED: {unlisted}"
    )


def test_every_allow_list_entry_still_matches_a_use():
    stale = sorted(set(ALLOWED) - set(_all_uses()))
    assert not stale, f"Remove these entries from ALLOWED, nothing uses all_tenants there: {stale}"


def test_the_scan_sees_uses_in_functions_classes_and_embedded_code():
    source = '''
rows = Model.all_tenants.all()

class Command:
    def handle(self):
        return Other.all_tenants.filter(pk=1)

SCRIPT = """
for model in models:
    model.all_tenants.count()
"""
DOC = "use the explicit Model.all_tenants manager."
'''
    assert sorted(where for where, _ in _uses(ast.parse(source))) == [
        "<module>", "<module>", "Command.handle",
    ]
