"""`make lint` sees the whole package: a planted type error or forbidden import fails it.

Each test runs the Makefile's own lint target on a scratch copy of the sources, so nothing
is ever planted in the real tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
SOURCES = ("Makefile", "pyproject.toml", "edrtrial", "connectors", "playbooks", "reports")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of what the lint targets read, without caches."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def plant(tree: Path, relative: str, text: str) -> None:
    (tree / relative).write_text(text)


def make(tree: Path, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(tree), target, f"BIN={BIN}", *variables],
        capture_output=True,
        text=True,
        # Wide enough that import-linter's report keeps each import on one line.
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )


def test_a_type_error_under_connectors_fails_mypy_with_its_real_path(scratch):
    plant(scratch, "connectors/defender/_planted.py", 'count: int = "three"\n')

    result = make(scratch, "lint-types")

    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("connectors/defender/_planted.py:1: error: Incompatible types")
        for line in lines
    ), result.stdout
    assert "Found 1 error in 1 file" in result.stdout  # the rest of the tree is clean


@pytest.mark.parametrize(
    ("contract", "relative", "text", "reported"),
    [
        (
            "reports-pure",
            "reports/_planted.py",
            "from sqlalchemy.orm import Session\n",
            "edrtrial.reports._planted -> sqlalchemy (l.1)",
        ),
        (
            "reports-pure",
            "reports/_planted.py",
            "from edrtrial.notify.outbox import enqueue\n",
            "edrtrial.reports._planted -> edrtrial.notify.outbox (l.1)",
        ),
        (
            "cli-on-top",
            "edrtrial/desk/_planted.py",
            "import edrtrial.cli.main\n",
            "edrtrial.desk._planted -> edrtrial.cli.main (l.1)",
        ),
        (
            "layers",
            "edrtrial/desk/_planted.py",
            "import edrtrial.cli.main\n",
            "edrtrial.desk._planted -> edrtrial.cli.main (l.1)",
        ),
    ],
    ids=["reports-orm-session", "reports-outbox", "desk-cli-forbidden", "desk-cli-layers"],
)
def test_a_forbidden_import_breaks_its_contract(scratch, contract, relative, text, reported):
    plant(scratch, relative, text)

    result = make(scratch, "lint-imports", f"IMPORT_CONTRACTS={contract}")

    assert result.returncode != 0
    assert reported in " ".join(result.stdout.split()), result.stdout + result.stderr
