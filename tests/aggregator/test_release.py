"""The release tooling: one version everywhere, and the integration zip HACS downloads.

``scripts/check-versions`` is what the release workflow runs against the tag;
``scripts/integration-zip`` builds the asset hacs.json promises. Both run here as the workflow
runs them (as programs), on this checkout and on deliberately broken copies of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jeisson

ROOT = Path(__file__).resolve().parents[2]
CHECK_VERSIONS = ROOT / "scripts" / "check-versions"
INTEGRATION_ZIP = ROOT / "scripts" / "integration-zip"
INTEGRATION = ROOT / "custom_components" / "jeisson"
VERSION = jeisson.__version__
VERSIONED_FILES = (
    "jeisson/__init__.py",
    "aggregator/pyproject.toml",
    "custom_components/jeisson/manifest.json",
    "custom_components/jeisson/const.py",
)


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of the release scripts as the workflow does."""
    return subprocess.run(  # noqa: S603 - this interpreter runs our own scripts
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def checkout_copy(tmp_path: Path) -> Path:
    """Return a copy of the files that state the version, laid out as in the checkout."""
    for name in VERSIONED_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    return tmp_path


def test_every_place_names_the_library_version() -> None:
    """The checkout agrees with itself: the script prints jeisson.__version__."""
    result = run(CHECK_VERSIONS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == VERSION


def test_the_tag_must_be_v_plus_the_version() -> None:
    """v0.2.0 releases 0.2.0; a bare version or another version is refused, by name."""
    assert run(CHECK_VERSIONS, "--tag", f"v{VERSION}").returncode == 0
    for tag in (VERSION, f"v{VERSION}.1", "v0.0.0"):
        result = run(CHECK_VERSIONS, "--tag", tag)
        assert result.returncode == 1
        assert f"tag {tag!r}: expected v{VERSION}" in result.stderr


@pytest.mark.parametrize(
    ("path", "old", "new", "named"),
    [
        (
            "jeisson/__init__.py",
            f'__version__ = "{VERSION}"',
            '__version__ = "9.9.9"',
            "but jeisson/__init__.py __version__ is '9.9.9'",
        ),
        (
            "aggregator/pyproject.toml",
            f'version = "{VERSION}"',
            'version = "9.9.9"',
            "aggregator/pyproject.toml version: '9.9.9'",
        ),
        (
            "aggregator/pyproject.toml",
            f'"jeisson=={VERSION}"',
            '"jeisson>=0.1"',
            "aggregator/pyproject.toml dependency jeisson==: None",
        ),
        (
            "custom_components/jeisson/manifest.json",
            f'"version": "{VERSION}"',
            '"version": "9.9.9"',
            "manifest.json version: '9.9.9'",
        ),
        (
            "custom_components/jeisson/manifest.json",
            f'"jeisson=={VERSION}"',
            '"jeisson==9.9.9"',
            "manifest.json requirements jeisson==: '9.9.9'",
        ),
        (
            "custom_components/jeisson/const.py",
            f'SOFTWARE_VERSION: Final = "{VERSION}"',
            'SOFTWARE_VERSION: Final = "9.9.9"',
            "const.py SOFTWARE_VERSION: '9.9.9'",
        ),
    ],
)
def test_a_place_left_behind_is_named(
    checkout_copy: Path, path: str, old: str, new: str, named: str
) -> None:
    """Each of the six places is checked: changing only it fails and names it."""
    file = checkout_copy / path
    text = file.read_text("utf-8")
    assert old in text
    file.write_text(text.replace(old, new), "utf-8")
    result = run(CHECK_VERSIONS, "--root", str(checkout_copy))
    assert result.returncode == 1
    assert named in result.stderr
    assert result.stdout == ""


def test_a_version_that_is_no_release_version_is_refused(checkout_copy: Path) -> None:
    """A version HACS, PyPI and a tag would not read alike (here: a local label) is refused."""
    for path in VERSIONED_FILES:
        file = checkout_copy / path
        file.write_text(file.read_text("utf-8").replace(VERSION, f"{VERSION}+local"), "utf-8")
    result = run(CHECK_VERSIONS, "--root", str(checkout_copy))
    assert result.returncode == 1
    assert "is not a release version" in result.stderr


def _integration_files() -> list[str]:
    return sorted(
        path.relative_to(INTEGRATION).as_posix()
        for path in INTEGRATION.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_release_zip_holds_the_integration_as_hacs_extracts_it(tmp_path: Path) -> None:
    """The asset is named as hacs.json says and holds the folder's contents at its top."""
    hacs = json.loads((ROOT / "hacs.json").read_text("utf-8"))
    assert hacs["zip_release"] is True

    result = run(INTEGRATION_ZIP, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    archive = Path(result.stdout.strip())
    assert archive == tmp_path / hacs["filename"]

    with zipfile.ZipFile(archive) as zipped:
        assert zipped.namelist() == _integration_files()
        assert json.loads(zipped.read("manifest.json")) == json.loads(
            (INTEGRATION / "manifest.json").read_text("utf-8")
        )
        assert zipped.read("brand/icon.png") == (INTEGRATION / "brand" / "icon.png").read_bytes()


def test_release_zip_is_reproducible(tmp_path: Path) -> None:
    """Two builds of the same checkout are byte-for-byte the same archive."""
    first = Path(run(INTEGRATION_ZIP, "--out", str(tmp_path / "a")).stdout.strip())
    second = Path(run(INTEGRATION_ZIP, "--out", str(tmp_path / "b")).stdout.strip())
    assert first.read_bytes() == second.read_bytes()


def test_release_zip_refuses_a_hacs_json_without_a_zip_release(tmp_path: Path) -> None:
    """Without zip_release/filename HACS would not download the asset: building it is refused."""
    shutil.copytree(INTEGRATION, tmp_path / "custom_components" / "jeisson")
    hacs = json.loads((ROOT / "hacs.json").read_text("utf-8"))
    del hacs["zip_release"]
    (tmp_path / "hacs.json").write_text(json.dumps(hacs), "utf-8")
    result = run(INTEGRATION_ZIP, "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "zip_release must be true" in result.stderr
    assert not (tmp_path / "out").exists()
