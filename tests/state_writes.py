"""Finds writes of an entity's state column outside the modules allowed to write it.

A state machine is only the one writer if nothing else writes the column. This scanner reads
the shipped source (no import, no execution) and reports every form a write can take:
an attribute store (`t.state = x`, augmented, annotated, in a tuple, as a loop target),
`setattr` with that name (or with a name only known at run time, in a module that mentions
the model), an UPDATE/INSERT of the model whose `.values(...)` names the column (or hides
its keys in a `**` splat or a variable), a constructor call with the column as a keyword, and
any call handed both the model and the column's name (`claim(session, Ticket, id, "state", …)`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
SHIPPED = ("edrtrial", "connectors", "playbooks", "reports")
# The sandbox simulates Microsoft's own objects (their alerts have a `status` of their own).
NOT_OURS = ("edrtrial/sandbox/",)


@dataclass(frozen=True, slots=True)
class Rule:
    """Which column of which model only these modules may write."""

    model: str
    column: str
    allowed: frozenset[str]


@dataclass(frozen=True, slots=True)
class Write:
    """One place that writes the column."""

    path: str
    line: int
    form: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.form}"


def _names(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.Attribute):
            yield child.attr
        elif isinstance(child, ast.alias):
            yield (child.asname or child.name).rpartition(".")[2]


def _statement_root(call: ast.Call) -> ast.Call | None:
    """For `update(M).where(…).values(…)`, the innermost `update(M)` / `insert(M)` call."""
    node: ast.AST = call.func
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("update", "insert") and node.args:
                return node
            node = func
        else:
            return None


def _values_write(call: ast.Call, column: str) -> str | None:
    """How a `.values(...)` call writes the column, if it does (or might)."""
    for keyword in call.keywords:
        if keyword.arg == column:
            return f".values({column}=…)"
        if keyword.arg is None:
            return ".values(**…) (keys unknown)"
    for arg in call.args:
        if isinstance(arg, ast.Dict):
            for key in arg.keys:
                if key is None:
                    return ".values({**…}) (keys unknown)"
                if isinstance(key, ast.Constant) and key.value == column:
                    return f'.values({{"{column}": …}})'
        else:
            return ".values(<variable>) (keys unknown)"
    return None


def find_writes(source: str, path: str, rule: Rule) -> list[Write]:
    """Every write of `rule.model.rule.column` in one module's source."""
    tree = ast.parse(source, filename=path)
    mentions_model = rule.model in set(_names(tree))
    found: list[Write] = []

    def hit(node: ast.AST, form: str) -> None:
        found.append(Write(path, getattr(node, "lineno", 0), form))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if node.attr == rule.column:
                hit(node, f"attribute store .{rule.column} = …")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "setattr" and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant):
                if attr.value == rule.column:
                    hit(node, f'setattr(…, "{rule.column}", …)')
            elif mentions_model:
                hit(node, "setattr(…, <variable>, …) in a module that uses " + rule.model)
        if name == "values":
            root = _statement_root(node)
            if root is not None and rule.model in set(_names(root.args[0])):
                form = _values_write(node, rule.column)
                if form:
                    hit(node, f"{name} of {rule.model}: {form}")
        if name == rule.model and any(k.arg == rule.column for k in node.keywords):
            hit(node, f"{rule.model}({rule.column}=…)")
        args = [*node.args, *(k.value for k in node.keywords)]
        gets_model = any(isinstance(a, ast.Name) and a.id == rule.model for a in args)
        gets_column = any(isinstance(a, ast.Constant) and a.value == rule.column for a in args)
        if gets_model and gets_column:
            hit(node, f'{name}(…, {rule.model}, …, "{rule.column}", …)')
    return found


def shipped_modules(root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """(relative path, source) of every shipped Python module but the sandbox's."""
    for folder in SHIPPED:
        for file in sorted((root / folder).rglob("*.py")):
            relative = file.relative_to(root).as_posix()
            if "__pycache__" in file.parts or relative.startswith(NOT_OURS):
                continue
            if relative.startswith("edrtrial/migrations/"):
                continue  # migrations write history, not state
            yield relative, file.read_text(encoding="utf-8")


def writes_outside(rule: Rule, root: Path = ROOT) -> list[Write]:
    """Writes of the rule's column in modules it does not allow."""
    return [
        write
        for path, source in shipped_modules(root)
        if path not in rule.allowed
        for write in find_writes(source, path, rule)
    ]
