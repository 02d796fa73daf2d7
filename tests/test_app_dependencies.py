"""Apps depend one way: webhooks -> multimodal -> outcomes -> operations -> core (DESIGN §7.1).

Every non-test module of the project is parsed (ast), imports inside functions included, and
any import against that direction fails the test with its file and line. A lower layer that
needs a higher one offers a registration hook instead (the hub's process sources).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = "agent33"
# Layer of each top-level package, lowest first: a module may import its own layer and
# the layers below it, never one above.
LAYERS = {CORE: 0, "operations": 1, "outcomes": 2, "multimodal": 3, "webhooks": 4}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, at any depth, plus
    `importlib.import_module("...")` with a literal name. Relative imports stay inside
    their own package, so they are left out."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(relative_path: str, source: str) -> list[str]:
    """Imports of `source` (the module at `relative_path`) against the direction."""
    own = relative_path.split("/", 1)[0]
    problems = []
    for line, module in imported_modules(ast.parse(source, filename=relative_path)):
        target = module.split(".", 1)[0]
        if target in LAYERS and LAYERS[target] > LAYERS[own]:
            problems.append(
                f"{relative_path}:{line}: imports {module} "
                f"({own if own != CORE else 'core'} may not import {target})"
            )
    return problems


def project_modules() -> list[Path]:
    modules = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or path.name.startswith("test_") or ".venv" in parts:
                continue
            modules.append(path)
    return modules


def test_apps_import_only_downwards():
    modules = project_modules()
    assert len(modules) > 50  # really walked the project
    problems = []
    for path in modules:
        relative = path.relative_to(ROOT).as_posix()
        problems += violations(relative, path.read_text(encoding="utf-8"))
    assert problems == [], "Imports against multimodal -> outcomes -> operations -> core:\n" + (
        "\n".join(problems)
    )


def test_the_check_sees_imports_at_any_depth():
    source = (
        "import json\n"
        "from operations.hub import iso\n"
        "def control():\n"
        "    from outcomes.services import event_record\n"
        "    import multimodal.tasks\n"
        "    return importlib.import_module('outcomes.demo')\n"
        "from . import selectors\n"
    )
    assert violations("operations/services.py", source) == [
        "operations/services.py:4: imports outcomes.services "
        "(operations may not import outcomes)",
        "operations/services.py:5: imports multimodal.tasks "
        "(operations may not import multimodal)",
        "operations/services.py:6: imports outcomes.demo (operations may not import outcomes)",
    ]
    assert violations("agent33/urls.py", "from operations import views\n") == [
        "agent33/urls.py:1: imports operations (core may not import operations)"
    ]
    assert violations("outcomes/x.py", "import multimodal\nimport operations\n") == [
        "outcomes/x.py:1: imports multimodal (outcomes may not import multimodal)"
    ]
    assert violations("multimodal/x.py", "import outcomes, operations, agent33\n") == []
