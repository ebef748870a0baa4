"""The release tooling: one version everywhere, the integration zip HACS downloads, the workflows.

``scripts/check-versions`` is what the release workflow runs against the tag;
``scripts/integration-zip`` builds the asset hacs.json promises. Both run here as the workflow
runs them (as programs), on this checkout and on deliberately broken copies of it. The
workflows themselves only run on GitHub; their key facts (triggers, permissions, trusted
publishing, the zip's name, the scripts they call) are checked here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

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


# --- the workflows (.github/workflows) -----------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPT_CALL = re.compile(r"(?:^|\s)(?:python\s+)?(scripts/[\w.-]+)")
PUBLISH_ACTION = "pypa/gh-action-pypi-publish@release/v1"


def workflow(name: str) -> dict[str, Any]:
    """Load one workflow; YAML 1.1 reads the key ``on`` as True, so it is put back."""
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text("utf-8"))
    if True in document:
        document["on"] = document.pop(True)
    return document


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a job's steps (a job calling a reusable workflow has none)."""
    job_steps: list[dict[str, Any]] = job.get("steps", [])
    return job_steps


def runs(job: dict[str, Any]) -> str:
    """Return every shell line a job runs, as one text."""
    return "\n".join(step["run"] for step in steps(job) if "run" in step)


def uses(job: dict[str, Any]) -> list[str]:
    """Return the actions a job's steps use, in order."""
    return [step["uses"] for step in steps(job) if "uses" in step]


def test_every_workflow_is_well_formed() -> None:
    """Each workflow parses, reads the repository only by default, and its jobs can run."""
    names = sorted(path.name for path in WORKFLOWS.glob("*.yml"))
    assert names == ["ci.yml", "release.yml", "validate.yml"]
    for name in names:
        document = workflow(name)
        assert document["name"]
        assert document["on"]
        assert document["permissions"] == {"contents": "read"}, name
        for job_name, job in document["jobs"].items():
            assert "uses" in job or ("runs-on" in job and steps(job)), (name, job_name)
            for step in steps(job):
                assert ("uses" in step) != ("run" in step), (name, job_name, step)


def test_every_script_a_workflow_runs_exists() -> None:
    """A renamed or missing script fails here, not on GitHub at release time."""
    called = {
        script
        for path in WORKFLOWS.glob("*.yml")
        for job in workflow(path.name)["jobs"].values()
        for script in SCRIPT_CALL.findall(runs(job))
    }
    assert {
        "scripts/test",
        "scripts/check-versions",
        "scripts/integration-zip",
        "scripts/release-check",
    } <= called
    for script in called:
        assert (ROOT / script).is_file(), script
        assert os.access(ROOT / script, os.X_OK), script


def test_ci_runs_the_whole_suite_on_pushes_pull_requests_and_for_the_release() -> None:
    """ci.yml runs scripts/test on main, on pull requests, and when release.yml calls it."""
    ci = workflow("ci.yml")
    assert ci["on"]["push"] == {"branches": ["main"]}
    assert "pull_request" in ci["on"]
    assert "workflow_call" in ci["on"]
    (job,) = ci["jobs"].values()
    assert job["timeout-minutes"] <= 90
    assert "--privileged" in job["container"]["options"].split()
    assert runs(job).splitlines()[-1] == "scripts/test"


def test_release_runs_on_version_tags_only_after_the_tests() -> None:
    """A v* tag, and nothing else, releases; publishing waits for tests, build and check."""
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert set(jobs["pypi"]["needs"]) == {"test", "build", "release-check"}
    assert set(jobs["github-release"]["needs"]) == {"build", "pypi"}


def test_release_builds_and_checks_both_distributions_against_the_tag() -> None:
    """Tag = version, sdist + wheel of jeisson and jeisson-aggregator, twine --strict."""
    build = runs(workflow("release.yml")["jobs"]["build"])
    assert 'scripts/check-versions --tag "$GITHUB_REF_NAME"' in build
    assert "python -m build --outdir dist .\n" in build
    assert "python -m build --outdir dist aggregator" in build
    assert "twine check --strict dist/*" in build


def test_release_check_loads_the_very_files_the_build_job_made() -> None:
    """release-check runs on the build job's artifacts, in the container scripts/py314 needs.

    It downloads the distributions and the zip into the folders its command line names, so
    what it installs and loads (scripts/release-check) is what PyPI and HACS get.
    """
    jobs = workflow("release.yml")["jobs"]
    job = jobs["release-check"]
    assert job["needs"] == ["build"]
    assert "--privileged" in job["container"]["options"].split()
    uploaded = {
        step["with"]["name"]: step["with"]["path"]
        for step in steps(jobs["build"])
        if step.get("uses", "").startswith("actions/upload-artifact@")
    }
    downloaded = {
        step["with"]["name"]: step["with"]["path"]
        for step in steps(job)
        if step.get("uses", "").startswith("actions/download-artifact@")
    }
    assert set(downloaded) == set(uploaded) == {"python-distributions", "integration-zip"}
    command = re.fullmatch(
        r"scripts/release-check --dist (\S+) --zip (\S+)", runs(job).splitlines()[-1]
    )
    assert command
    dist, archive = command.groups()
    assert dist.rstrip("/") == downloaded["python-distributions"].rstrip("/")
    hacs = json.loads((ROOT / "hacs.json").read_text("utf-8"))
    assert archive == f"{downloaded['integration-zip'].rstrip('/')}/{hacs['filename']}"


def test_pypi_is_published_by_trusted_publishing_alone() -> None:
    """Only the publish job may mint an identity token; it holds no password or API token."""
    jobs = workflow("release.yml")["jobs"]
    publish = jobs["pypi"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"] == "pypi"
    step = next(step for step in steps(publish) if step.get("uses") == PUBLISH_ACTION)
    assert not {"password", "user"} & set(step.get("with", {}))
    for name, job in jobs.items():
        if name != "pypi":
            assert "id-token" not in job.get("permissions", {}), name
    assert "secrets." not in (WORKFLOWS / "release.yml").read_text("utf-8")


def test_the_github_release_carries_the_zip_hacs_asks_for(tmp_path: Path) -> None:
    """The build job zips into a folder; the release uploads from it the file hacs.json names."""
    jobs = workflow("release.yml")["jobs"]
    out = re.search(r"scripts/integration-zip --out (\S+)", runs(jobs["build"]))
    assert out
    folder = out.group(1)
    upload = runs(jobs["github-release"])
    assert jobs["github-release"]["permissions"] == {"contents": "write"}
    patterns = re.findall(rf"(?:^|\s)({re.escape(folder)}/\S+)", upload)
    built = Path(run(INTEGRATION_ZIP, "--out", str(tmp_path / folder)).stdout.strip())
    hacs = json.loads((ROOT / "hacs.json").read_text("utf-8"))
    assert built.name == hacs["filename"]
    assert any(fnmatch.fnmatch(f"{folder}/{built.name}", pattern) for pattern in patterns)


def test_hassfest_and_hacs_validate_the_integration() -> None:
    """validate.yml runs hassfest and the HACS action (category integration, nothing ignored)."""
    validate = workflow("validate.yml")
    assert {"push", "pull_request", "schedule"} <= set(validate["on"])
    jobs = validate["jobs"]
    assert uses(jobs["hassfest"]) == [
        "actions/checkout@v4",
        "home-assistant/actions/hassfest@master",
    ]
    assert uses(jobs["hacs"]) == ["actions/checkout@v4", "hacs/action@main"]
    hacs_step = steps(jobs["hacs"])[-1]
    assert hacs_step["with"] == {"category": "integration"}


# --- what the wheels carry ------------------------------------------------------------------------

AGGREGATOR = ROOT / "aggregator"
DISTRIBUTION_FILES = frozenset({"pyproject.toml", "README.md", "LICENSE"})
"""Files of the aggregator folder that describe the distribution rather than ship in it."""


def _source_files(folder: Path) -> list[Path]:
    """Return the files under a folder, without caches and build leftovers."""
    return [
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(
            part in {"__pycache__", "build"} or part.endswith(".egg-info")
            for part in path.relative_to(folder).parts
        )
    ]


def test_the_aggregator_wheel_lists_every_package_and_data_file() -> None:
    """Every subpackage and data file under aggregator/ is in its pyproject.

    Otherwise the wheel, and so ``pip install jeisson-aggregator``, would silently lack it.
    """
    setuptools = tomllib.loads((AGGREGATOR / "pyproject.toml").read_text("utf-8"))["tool"][
        "setuptools"
    ]
    assert setuptools["package-dir"] == {"aggregator": "."}
    packages = {
        ".".join(("aggregator", *init.parent.relative_to(AGGREGATOR).parts))
        for init in AGGREGATOR.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(setuptools["packages"]) == packages

    shipped = {
        path
        for pattern in setuptools["package-data"]["aggregator"]
        for path in AGGREGATOR.glob(pattern)
    }
    data = {
        path
        for path in _source_files(AGGREGATOR)
        if path.suffix != ".py"
        and path.relative_to(AGGREGATOR).as_posix() not in DISTRIBUTION_FILES
    }
    assert "openadr/spec/openadr3-3.1.0.yaml" in {
        p.relative_to(AGGREGATOR).as_posix() for p in data
    }
    missing = sorted(path.relative_to(AGGREGATOR).as_posix() for path in data - shipped)
    assert not missing, f"aggregator/pyproject.toml package-data does not ship: {missing}"
