"""The project has one home, and every link to it resolves.

The canonical repository is https://github.com/jeisson-dr/jeisson, owned by @jeisson-dr. The
integration's manifest, both pyproject files, HACS and the docs link into it; a link to a file
or folder of the repository (``blob/main/...``, ``tree/main/...``) must name one that exists, and
relative links in the Markdown documents must too.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = "jeisson-dr"
REPOSITORY = f"https://github.com/{OWNER}/jeisson"
BRANCH = "main"
MANIFEST = ROOT / "custom_components" / "jeisson" / "manifest.json"
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "aggregator" / "pyproject.toml")
MARKDOWN = (
    ROOT / "README.md",
    ROOT / "aggregator" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
)
URL = re.compile(r"https?://[^\s)>\"'`\]]+")
MARKDOWN_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
REPOSITORY_PAGES = ("", "/issues", "/releases")
"""Pages of the repository that are not files: the repository, its issues, its releases."""
PYPI_PROJECT = re.compile(r"^https://pypi\.org/project/(?P<name>[^/]+)/?$")


def _manifest() -> dict[str, object]:
    manifest: dict[str, object] = json.loads(MANIFEST.read_text("utf-8"))
    return manifest


def _project_urls(pyproject: Path) -> dict[str, str]:
    urls: dict[str, str] = tomllib.loads(pyproject.read_text("utf-8"))["project"]["urls"]
    return urls


def declared_urls() -> list[tuple[str, str]]:
    """Return (where, url) for every URL the manifest, pyprojects and Markdown documents hold."""
    manifest = _manifest()
    found = [
        (f"manifest.json {key}", str(manifest[key])) for key in ("documentation", "issue_tracker")
    ]
    for pyproject in PYPROJECTS:
        name = pyproject.relative_to(ROOT).as_posix()
        found.extend((f"{name} {label}", url) for label, url in _project_urls(pyproject).items())
    for document in MARKDOWN:
        name = document.relative_to(ROOT).as_posix()
        found.extend((name, url.rstrip(".,;:")) for url in URL.findall(document.read_text("utf-8")))
    return found


def _distribution_names() -> set[str]:
    return {tomllib.loads(path.read_text("utf-8"))["project"]["name"] for path in PYPROJECTS}


def repository_target(url: str) -> Path | None:
    """Return the file or folder a link into this repository names (None: a repository page)."""
    rest = url.removeprefix(REPOSITORY).split("#", 1)[0]
    if rest in REPOSITORY_PAGES:
        return None
    for kind in ("blob", "tree"):
        prefix = f"/{kind}/{BRANCH}/"
        if rest.startswith(prefix):
            target = ROOT / rest.removeprefix(prefix)
            assert target.is_file() if kind == "blob" else target.is_dir(), url
            return target
    pytest.fail(f"{url}: not a page of {REPOSITORY} this test knows")


def test_every_link_into_the_repository_resolves() -> None:
    """blob/main links name files, tree/main links folders, in this checkout."""
    checked = [(where, url) for where, url in declared_urls() if url.startswith(f"{REPOSITORY}/")]
    assert len(checked) >= 8
    for _where, url in checked:
        repository_target(url)


def test_every_github_link_to_the_project_names_its_one_home() -> None:
    """No link points to another owner's copy or another spelling of the repository."""
    for where, url in declared_urls():
        parts = urlsplit(url)
        if parts.netloc == "github.com" and parts.path.strip("/").split("/")[1:2] == ["jeisson"]:
            assert url == REPOSITORY or url.startswith(f"{REPOSITORY}/"), (where, url)


def test_pypi_links_to_the_project_name_its_distributions() -> None:
    """A PyPI link to a jeisson project names jeisson or jeisson-aggregator, as spelled there."""
    names = _distribution_names()
    assert names == {"jeisson", "jeisson-aggregator"}
    linked = [
        (where, url, match["name"])
        for where, url in declared_urls()
        if (match := PYPI_PROJECT.match(url)) and match["name"].lower().startswith("jeisson")
    ]
    assert linked
    for where, url, name in linked:
        assert name in names, (where, url)


def test_manifest_links_are_the_homeowner_guide_and_the_issue_tracker() -> None:
    """documentation is a homeowner page of this repository; issues go to its tracker."""
    manifest = _manifest()
    documentation = str(manifest["documentation"])
    page = repository_target(documentation)
    assert page is not None
    assert page.suffix == ".md"
    assert "## Installation" in page.read_text("utf-8")
    # README's homeowner section leads to the same page (it is what HACS shows).
    assert documentation in (ROOT / "README.md").read_text("utf-8")
    assert manifest["issue_tracker"] == f"{REPOSITORY}/issues"
    for pyproject in PYPROJECTS:
        urls = _project_urls(pyproject)
        assert urls["Homepage"] == REPOSITORY
        assert urls["Issues"] == manifest["issue_tracker"]


def test_codeowners_are_the_repository_owner() -> None:
    """manifest.json codeowners and .github/CODEOWNERS name the repository's owner."""
    assert _manifest()["codeowners"] == [f"@{OWNER}"]
    rules = [
        line.split()
        for line in (ROOT / ".github" / "CODEOWNERS").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules == [["*", f"@{OWNER}"]]


@pytest.mark.parametrize("document", MARKDOWN, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_markdown_links_resolve(document: Path) -> None:
    """A relative link in README or docs names a file or folder next to the document."""
    for match in MARKDOWN_LINK.finditer(document.read_text("utf-8")):
        target = match["target"].split("#", 1)[0]
        if not target or urlsplit(target).scheme:
            continue
        assert (document.parent / target).exists(), f"{document.name}: {match['target']}"
