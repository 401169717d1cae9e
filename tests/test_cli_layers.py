"""The CLI's shape: it holds no SQL, its modules form no circle, and nothing imports it.

The scan reads the shipped source (no import, no execution) and sees every import statement,
at the top, inside functions or under TYPE_CHECKING, relative or absolute, and calls of
`importlib.import_module` / `__import__` with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CLI = ROOT / "edrtrial" / "cli"
# Source folder -> the import name it ships under (package-dir mapping in pyproject.toml).
SHIPPED = {
    "edrtrial": "edrtrial",
    "connectors": "edrtrial.connectors",
    "playbooks": "edrtrial.playbooks",
    "reports": "edrtrial.reports",
}
# The one sqlalchemy name a command module may import, as a type only (prefer none).
ALLOWED_SQLALCHEMY = ("sqlalchemy.orm", "Session")


def module_name(path: Path) -> str:
    """The import name of a shipped source file."""
    top, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [SHIPPED[top], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str, str]]:
    """(line, module, name) for each name imported; name is "" for a whole module."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level > 1:
                base = base[: len(base) - node.level + 1]
            origin = ".".join(base) if node.level else ""
            target = ".".join(p for p in (origin, node.module or "") if p)
            for alias in node.names:
                yield node.lineno, target, alias.name
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value, ""


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def sql_imports(source: str, module: str) -> list[str]:
    """The sqlalchemy imports a CLI module makes, beyond the allowed Session type."""
    return [
        f"line {line}: {target}" + (f" import {name}" if name else "")
        for line, target, name in imports(source, module)
        if (target == "sqlalchemy" or target.startswith("sqlalchemy."))
        and (target, name) != ALLOWED_SQLALCHEMY
    ]


def _is_cli(dotted: str) -> bool:
    return dotted == "edrtrial.cli" or dotted.startswith("edrtrial.cli.")


def _is_common(dotted: str) -> bool:
    return dotted == "edrtrial.cli.common" or dotted.startswith("edrtrial.cli.common.")


def cli_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each CLI module this one imports that it may not.

    A command module may import only `edrtrial.cli.common`; `edrtrial.cli.main` may import
    them all; code outside the CLI may import none of it (the CLI is the top layer).
    """
    inside = _is_cli(module)
    found = []
    for line, target, name in imports(source, module, is_package):
        dotted = f"{target}.{name}" if name else target  # `from edrtrial.cli import desk`
        if not _is_cli(dotted) or dotted == module:
            continue
        if inside and (module == "edrtrial.cli.main" or _is_common(dotted)):
            continue
        found.append(f"line {line}: {dotted}")
    return found


def shipped_files() -> list[Path]:
    return sorted(p for top in SHIPPED for p in (ROOT / top).rglob("*.py"))


def cli_files() -> list[Path]:
    return sorted(CLI.glob("*.py"))


def test_the_scan_sees_the_cli_and_its_entry_point() -> None:
    names = {module_name(p) for p in cli_files()}
    assert {"edrtrial.cli.main", "edrtrial.cli.common"} <= names
    assert len(names) >= 4  # the group, the common part and command modules
    assert 'edrtrial = "edrtrial.cli.main:main"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("path", cli_files(), ids=lambda p: p.name)
def test_no_cli_module_imports_sqlalchemy(path: Path) -> None:
    found = sql_imports(path.read_text(encoding="utf-8"), module_name(path))
    assert found == [], f"{path.name} queries the store itself; use a domain query: {found}"


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_main_imports_command_modules_and_nothing_imports_the_cli(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    found = cli_imports(source, module_name(path), path.name == "__init__.py")
    assert found == [], f"{path.relative_to(ROOT)}: {found}"


def test_main_holds_the_group_and_registrations_only() -> None:
    tree = ast.parse((CLI / "main.py").read_text(encoding="utf-8"))
    defined = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert defined == ["main"]


def test_the_help_does_not_load_the_sandbox_or_the_scheduler(tmp_path: Path) -> None:
    probe = (
        "import sys, edrtrial.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith(('apscheduler', 'uvicorn', "
        "'edrtrial.sandbox', 'edrtrial.service.scheduler'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy import select\n",
        "import sqlalchemy as sa\n",
        "import sqlalchemy.orm\n",
        "def f():\n    from sqlalchemy import or_, select\n",
        "if TYPE_CHECKING:\n    from sqlalchemy.orm import Session, sessionmaker\n",
        "from sqlalchemy.orm import Session as S, selectinload\n",
        "import importlib\nimportlib.import_module('sqlalchemy')\n",
        "__import__('sqlalchemy.sql')\n",
    ],
)
def test_the_scan_finds_sqlalchemy_in_every_form(source: str) -> None:
    assert sql_imports(source, "edrtrial.cli.scratch")


def test_the_scan_lets_the_session_type_through() -> None:
    assert sql_imports("from sqlalchemy.orm import Session\n", "edrtrial.cli.scratch") == []


@pytest.mark.parametrize(
    ("source", "module", "wrong"),
    [
        ("from edrtrial.cli.desk import ticket\n", "edrtrial.cli.programme", True),
        ("from edrtrial.cli import desk\n", "edrtrial.cli.programme", True),
        ("from edrtrial.cli import common, desk\n", "edrtrial.cli.programme", True),
        ("from . import desk\n", "edrtrial.cli.programme", True),
        ("from .main import main\n", "edrtrial.cli.desk", True),
        ("def f():\n    from edrtrial.cli.main import _x\n", "edrtrial.cli.desk", True),
        ("import edrtrial.cli.service\n", "edrtrial.cli.desk", True),
        ("from edrtrial import cli\n", "edrtrial.cli.desk", True),
        ("from edrtrial.cli.desk import ticket\n", "edrtrial.cli.common", True),
        ("from edrtrial.cli.common import console\n", "edrtrial.desk.operator", True),
        ("from ..cli import common\n", "edrtrial.desk.operator", True),
        ("from edrtrial.cli.common import console, fails_cleanly\n", "edrtrial.cli.desk", False),
        ("from edrtrial.cli import common\n", "edrtrial.cli.desk", False),
        ("from .common import console\n", "edrtrial.cli.desk", False),
        ("import edrtrial.cli.common\n", "edrtrial.cli.desk", False),
        ("from edrtrial.cli import desk, service\n", "edrtrial.cli.main", False),
        ("from edrtrial.desk import queries\n", "edrtrial.cli.desk", False),
    ],
)
def test_the_scan_finds_imports_between_cli_modules(source: str, module: str, wrong: bool) -> None:
    assert bool(cli_imports(source, module)) is wrong
