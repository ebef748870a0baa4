"""The tests' own layout: shared helpers defined once, test modules never importing each other.

Helpers every suite uses (``free_port``, ``wait_for``) live in tests/helpers.py; helpers of one
suite live in its plain modules (common.py, fixtures.py, ...). A test module that imports
another test module runs that module's tests' imports and couples two files that should not
know each other, so the shared piece belongs in a helper module instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SHARED = TESTS / "helpers.py"
DEFINED_ONCE = ("free_port", "wait_for")


def _modules() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def _package(path: Path) -> list[str]:
    """Return the dotted package of a module under tests/ (tests.aggregator.cluster, ...)."""
    return ["tests", *path.parent.relative_to(TESTS).parts]


def _imported_modules(path: Path) -> set[str]:
    """Return the modules under tests/ that one module imports (relative imports resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tests."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path)[: len(_package(path)) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("tests."):
                module = node.module
            else:
                continue
            found.add(module)
            # `from . import test_x` imports a module by name.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("name", DEFINED_ONCE)
def test_shared_helpers_are_defined_once(name: str) -> None:
    """free_port and wait_for are defined in tests/helpers.py and nowhere else."""
    defined = [
        path.relative_to(TESTS).as_posix()
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    ]
    assert defined == [SHARED.relative_to(TESTS).as_posix()]


def test_no_test_module_imports_another_test_module() -> None:
    """Nothing under tests/ imports a test_*.py module; shared code lives in helper modules."""
    offenders = sorted(
        f"{path.relative_to(TESTS).as_posix()} imports {module}"
        for path in _modules()
        for module in _imported_modules(path)
        if module.rsplit(".", 1)[-1].startswith("test_")
    )
    assert not offenders
