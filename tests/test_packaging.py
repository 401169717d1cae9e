"""The wheel carries every sub-package and data file, and the code keeps its conventions."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # setuptools builds into build/lib and never prunes it: a module moved or deleted since
    # the last build would otherwise still ride along in the wheel.
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("edrtrial-*.whl")
    return zipfile.ZipFile(built)


def source_files(folder: str, pattern: str) -> set[str]:
    return {
        p.relative_to(ROOT / folder).as_posix()
        for p in (ROOT / folder).rglob(pattern)
        if "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    ("folder", "package", "patterns"),
    [
        ("edrtrial", "edrtrial", ("*.py", "*.json", "*.mako", "*.csv", "py.typed")),
        ("connectors", "edrtrial/connectors", ("*.py", "*.toml")),
        ("playbooks", "edrtrial/playbooks", ("*.py", "*.toml")),
        ("reports", "edrtrial/reports", ("*.py", "*.j2")),
    ],
)
def test_every_source_file_is_in_the_wheel_under_the_edrtrial_name(
    wheel, folder, package, patterns
):
    names = set(wheel.namelist())
    expected = {f"{package}/{f}" for pattern in patterns for f in source_files(folder, pattern)}
    assert expected and expected <= names, sorted(expected - names)


def test_pyproject_lists_every_package_folder():
    """setuptools ships only the listed packages: a folder left off is missing from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join((package, *init.parent.relative_to(ROOT / folder).parts))
        for package, folder in setuptools["package-dir"].items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found


def test_the_wheel_carries_no_module_without_a_source(wheel):
    """A module moved or deleted in the tree is gone from the wheel too."""
    sources = {
        f"{package}/{f}"
        for folder, package in (
            ("edrtrial", "edrtrial"),
            ("connectors", "edrtrial/connectors"),
            ("playbooks", "edrtrial/playbooks"),
            ("reports", "edrtrial/reports"),
        )
        for f in source_files(folder, "*.py")
    }
    shipped = {n for n in wheel.namelist() if n.endswith(".py")}
    assert shipped - sources == set()


def test_no_generic_top_level_module_is_installed(wheel):
    tops = {n.split("/")[0] for n in wheel.namelist() if not n.startswith("edrtrial-")}
    assert tops == {"edrtrial"}


def test_the_connector_is_registered_as_an_entry_point(wheel):
    [entry_points] = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[edrtrial.connectors]" in text
    assert "defender = edrtrial.connectors.defender:DefenderForBusinessConnector" in text


def test_ruff_finds_nothing():
    result = subprocess.run(
        [str(BIN / "ruff"), "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout
