"""README.md and docs/architecture.md describe the repository as it is.

Their layout blocks are trees of paths, one entry per line::

    aggregator/                 description
      api.py, openapi.py        description
                                continued description (indented to the description column)

An entry line names one or more paths (comma-separated) relative to the folder entry above it
with less indentation; whatever follows two spaces is description. Every named path must exist,
architecture.md must name every module of the four packages, and its endpoint table must be the
aggregator's router.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from aggregator.server import create_app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CONTINUATION_INDENT = 16
"""Lines indented this far continue a description; entries are never nested this deep."""
PATH_TOKEN = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/?$")
DESCRIPTION_GAP = re.compile(r"\s{2,}")
DOCUMENTED_PACKAGES = ("jeisson", "aggregator", "actuator", "custom_components/jeisson")
UNDOCUMENTED_PARTS = "__pycache__"
INTEGRATION = ROOT / "custom_components" / "jeisson"
DOCUMENTED_SUFFIXES = frozenset({".json", ".yaml", ".toml"})
"""Top-level data files named too (manifest.json, services.yaml, pyproject.toml, ...)."""
MIGRATION_REVISIONS = "aggregator/migrations/versions/"
"""Revisions are named by their folder, not one by one."""
ROUTE_ROW = re.compile(r"^\| (?P<methods>[A-Z/]+) \| `(?P<path>[^`]+)` \| (?P<auth>[^|]+) \|", re.M)


@dataclass(frozen=True)
class Entry:
    """One path a layout block names, and the line that names it."""

    path: str
    line: str


def section_block(document: Path, heading: str) -> str:
    """Return the first fenced block under a ``## heading`` of a Markdown document."""
    text = document.read_text("utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert match, f"{document.name}: no layout block under '## {heading}'"
    return match.group(1)


def layout_entries(block: str) -> list[Entry]:
    """Return every path a layout block names, resolved against its parent folders."""
    entries: list[Entry] = []
    parents: list[tuple[int, str]] = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= CONTINUATION_INDENT:
            continue
        names = DESCRIPTION_GAP.split(line.strip(), maxsplit=1)[0]
        tokens = [token.strip() for token in names.split(",")]
        assert all(PATH_TOKEN.match(token) for token in tokens), f"not a layout entry: {line!r}"
        while parents and parents[-1][0] >= indent:
            parents.pop()
        prefix = parents[-1][1] if parents else ""
        entries.extend(Entry(prefix + token, line) for token in tokens)
        if len(tokens) == 1 and tokens[0].endswith("/"):
            parents.append((indent, prefix + tokens[0]))
    return entries


def _exists(path: str) -> bool:
    target = ROOT / path
    return target.is_dir() if path.endswith("/") else target.is_file()


@pytest.mark.parametrize(("document", "heading"), [(README, "Layout"), (ARCHITECTURE, "Packages")])
def test_every_path_a_layout_block_names_exists(document: Path, heading: str) -> None:
    """Each file (and each folder/) of the layout is in the repository."""
    entries = layout_entries(section_block(document, heading))
    assert len(entries) > 10
    missing = [
        f"{entry.path} (line {entry.line.strip()!r})"
        for entry in entries
        if not _exists(entry.path)
    ]
    assert not missing, f"{document.name} names paths that do not exist: {missing}"


def test_the_layout_parser_resolves_nesting_and_refuses_prose() -> None:
    """The parser the two tests above rely on reads nesting, lists and continuations."""
    block = (
        "pkg/              the package\n"
        "  sub/            a folder\n"
        "    a.py, b.py    two modules\n"
        "                  a continuation line, not an entry\n"
        "  c.py            back one level\n"
        "LICENSE           top level again\n"
    )
    assert [entry.path for entry in layout_entries(block)] == [
        "pkg/",
        "pkg/sub/",
        "pkg/sub/a.py",
        "pkg/sub/b.py",
        "pkg/c.py",
        "LICENSE",
    ]
    with pytest.raises(AssertionError, match="not a layout entry"):
        layout_entries("--- server side ---\n")


def _modules() -> list[str]:
    """Every module and top-level file of the four packages that architecture.md must name.

    A package's ``__init__.py`` is named by its folder; the integration's is a module of its own.
    """
    found: list[str] = []
    for package in DOCUMENTED_PACKAGES:
        top = ROOT / package
        for path in sorted(top.rglob("*")):
            relative = path.relative_to(ROOT).as_posix()
            if not path.is_file() or UNDOCUMENTED_PARTS in path.parts:
                continue
            is_module = path.suffix == ".py" and (path.name != "__init__.py" or top == INTEGRATION)
            is_top_file = path.parent == top and path.suffix in DOCUMENTED_SUFFIXES
            if (is_module or is_top_file) and not relative.startswith(MIGRATION_REVISIONS):
                found.append(relative)
    return found


def test_architecture_names_every_module() -> None:
    """A module added without a line in docs/architecture.md fails here."""
    named = {entry.path for entry in layout_entries(section_block(ARCHITECTURE, "Packages"))}
    modules = _modules()
    assert "aggregator/negotiation/manager.py" in modules
    assert "jeisson/common/protocol.py" in modules
    unnamed = [module for module in modules if module not in named]
    assert not unnamed, f"docs/architecture.md (## Packages) does not name: {unnamed}"


def _router_routes() -> dict[tuple[str, str], bool]:
    """Return {(method, path): operator only} for every route of the aggregator's app."""
    routes: dict[tuple[str, str], bool] = {}
    for route in create_app().router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/{filename}"
        routes[(route.method, path)] = getattr(route.handler, "operator_only", False)
    return routes


def _documented_routes() -> dict[tuple[str, str], bool]:
    """Return {(method, path): operator only} from architecture.md's endpoint table."""
    section = ARCHITECTURE.read_text("utf-8").split("\n## Endpoints", 1)[1].split("\n## ", 1)[0]
    documented: dict[tuple[str, str], bool] = {}
    for row in ROUTE_ROW.finditer(section):
        for method in row["methods"].split("/"):
            documented[(method, row["path"])] = row["auth"].strip() == "operator"
    return documented


def test_endpoint_table_is_the_aggregators_router() -> None:
    """Every route is in the table, nothing else is, and 'operator' marks operator-only ones."""
    router = _router_routes()
    assert ("GET", "/api/v1/ws") in router
    assert router[("POST", "/api/v1/events")] is True
    assert _documented_routes() == router


def test_readme_install_commands_name_the_two_distributions() -> None:
    """README's pip commands install the distributions the two pyproject files define."""
    home = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["name"]
    server = tomllib.loads((ROOT / "aggregator" / "pyproject.toml").read_text("utf-8"))
    readme = README.read_text("utf-8")
    assert f"pip install {server['project']['name']}" in readme
    assert "pip install -e . -e ./aggregator" in readme
    assert f"`{home}`" in readme
    assert f"{home}=={server['project']['version']}" in server["project"]["dependencies"]
