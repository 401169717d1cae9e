"""Where an entity's state may be written: an AST scan of the shipped source.

Every state column is written by its entity's `Machine` (a conditional claim per step of one
transition table). This finds the other ways a state could be written, so none creeps back:

- an attribute store: `x.status = …`, `x.status += …`, `x.status: str = …`, a tuple or
  list target (`x.status, x.at = …`), a `for`/`with` target;
- `setattr(x, "status", …)` (with the name as a literal; a computed name cannot be told);
- `update(Model)…values(status=…)` (also `{"status": …}`, `**{…}`, `ordered_values`, a
  computed `**values`, or no `.values` at all: executemany parameters decide), and
  `Model.__table__.update()`, `query(Model)….update({…})`;
- `claim(…, Model, …, "status", …)`: any helper handed the model and the column's name;
- a second `Machine(…, Model, "status", …)`: the table is built once, in its states module.

An attribute store cannot be told apart by model (`ticket.state` and `tenant.state` look
alike), so a guard's column name is banned as an attribute store everywhere outside its
allowed files, except `self.<column>` inside a class that is not the guarded model (an HTTP
error's `self.status`). A store that is another model's column with the same name is
listed in `EXEMPT` with its reason, and an exemption that no longer matches anything fails
too, so the list shrinks as machines arrive.

To guard another column, add a `Guard` to `GUARDS`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("edrtrial", "connectors", "playbooks", "reports")
"""The folders shipped under the `edrtrial` import name."""
NOT_SCANNED = ("edrtrial/sandbox/",)
"""The sandbox simulates Microsoft's own objects (their machine actions have a status too)."""


@dataclass(frozen=True)
class Guard:
    """A state column and the files where a raw write of it would be allowed."""

    model: str
    column: str
    allowed: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Finding:
    """One write outside the allowed files."""

    path: str
    line: int
    form: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.form} writes {self.what}"


GUARDS = (
    Guard("Ticket", "state", frozenset({"edrtrial/desk/states.py"})),
    Guard("ResponseAction", "status", frozenset({"edrtrial/devices/states.py"})),
    Guard("OutboxMessage", "status", frozenset({"edrtrial/notify/states.py"})),
    Guard("Tenant", "state", frozenset({"edrtrial/ingest/states.py"})),
)

EXEMPT: dict[tuple[str, str], str] = {
    # (file, column): why an attribute store of that name there is another model's column.
}


def shipped_sources(root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """(path relative to the repository, text) of every shipped Python file."""
    for folder in SHIPPED:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(NOT_SCANNED):
                yield relative, path.read_text(encoding="utf-8")


def _names(node: ast.expr) -> str | None:
    """`Tenant` for `Tenant` or `models.Tenant`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _func_name(call: ast.Call) -> str | None:
    return _names(call.func)


def _keys(node: ast.expr) -> set[str] | None:
    """Column names a dict literal sets (`"status"` or `Model.status`); None if not a literal."""
    if not isinstance(node, ast.Dict):
        return None
    found: set[str] = set()
    for key in node.keys:
        if key is None:  # {**other}: unknown
            return None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
        elif isinstance(key, ast.Attribute):
            found.add(key.attr)
        else:
            return None
    return found


def _call_sets(call: ast.Call, column: str) -> bool:
    """Whether a `.values(…)`-like call may set `column` (a computed argument may)."""
    for keyword in call.keywords:
        if keyword.arg == column:
            return True
        if keyword.arg is None:  # **something
            keys = _keys(keyword.value)
            if keys is None or column in keys:
                return True
    for arg in call.args:
        keys = _keys(arg)
        if keys is None or column in keys:
            return True
    return False


def _chain(node: ast.expr) -> Iterator[ast.Call]:
    """The calls down a method chain: `update(M).where(…).values(…)` gives values, where, update."""
    while True:
        if isinstance(node, ast.Call):
            yield node
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return


def _mentions(call: ast.Call, guard: Guard) -> bool:
    args = [*call.args, *(k.value for k in call.keywords)]
    return any(_names(a) == guard.model for a in args)


def _is_update_of(call: ast.Call, guard: Guard) -> bool:
    """`update(Model)` or `sa.update(Model)` (a statement, not `dict.update`)."""
    return _func_name(call) == "update" and bool(call.args) and _names(call.args[0]) == guard.model


def _roots_at(node: ast.expr, root: str, guard: Guard) -> ast.Call | None:
    """The `root(Model)` call a method chain starts from, if any."""
    for inner in _chain(node):
        if _func_name(inner) == root and inner.args and _names(inner.args[0]) == guard.model:
            return inner
    return None


def _claims(call: ast.Call, guard: Guard) -> bool:
    """`claim(session, Model, id, column, …)`: true unless the column is another one."""
    column = next((k.value for k in call.keywords if k.arg == "column"), None)
    if column is None and len(call.args) >= 4:
        column = call.args[3]
    if isinstance(column, ast.Constant):
        return bool(column.value == guard.column)
    return True


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, guards: Iterable[Guard]) -> None:
        self.path = path
        self.guards = [g for g in guards if path not in g.allowed]
        self.findings: list[Finding] = []
        self.classes: list[str] = []
        self.exempt_used: set[tuple[str, str]] = set()
        self.updates: dict[int, tuple[ast.Call, Guard]] = {}  # update(M) calls seen
        self.valued: set[int] = set()  # those a .values(…) call is chained to

    def _add(self, node: ast.AST, form: str, guard: Guard) -> None:
        line = getattr(node, "lineno", 0)
        self.findings.append(Finding(self.path, line, form, f"{guard.model}.{guard.column}"))

    def finish(self) -> None:
        """Report the UPDATEs of a guarded model with no `.values`: their parameters decide."""
        for key, (call, guard) in self.updates.items():
            if key not in self.valued:
                self._add(call, "an UPDATE without .values (its parameters decide)", guard)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Store):
            hit = [g for g in self.guards if node.attr == g.column and self._store(node, g)]
            if hit:  # one finding, naming every model the store may belong to
                what = " or ".join(f"{g.model}.{g.column}" for g in hit)
                self.findings.append(Finding(self.path, node.lineno, "an attribute store", what))
        self.generic_visit(node)

    def _store(self, node: ast.Attribute, guard: Guard) -> bool:
        own = isinstance(node.value, ast.Name) and node.value.id == "self"
        if own and (not self.classes or self.classes[-1] != guard.model):
            return False  # another class's own attribute of that name
        if (self.path, guard.column) in EXEMPT:
            self.exempt_used.add((self.path, guard.column))
            return False
        return True

    def visit_Call(self, node: ast.Call) -> None:
        name = _func_name(node)
        for guard in self.guards:
            self._call(node, name, guard)
        self.generic_visit(node)

    def _call(self, node: ast.Call, name: str | None, guard: Guard) -> None:
        if name == "setattr" and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and attr.value == guard.column:
                self._add(node, "setattr", guard)
        elif name in ("values", "ordered_values"):
            root = _roots_at(node.func, "update", guard)
            if root is not None:
                self.valued.add(id(root))
                if _call_sets(node, guard.column):
                    self._add(node, "update(…).values", guard)
        elif _is_update_of(node, guard):
            self.updates[id(node)] = (node, guard)
        elif name == "update" and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            if isinstance(receiver, ast.Attribute) and receiver.attr == "__table__":
                if _names(receiver.value) == guard.model:
                    self._add(node, "Model.__table__.update()", guard)
            elif _roots_at(receiver, "query", guard) and _call_sets(node, guard.column):
                self._add(node, "query(…).update", guard)
        elif name == "claim" and _mentions(node, guard) and _claims(node, guard):
            self._add(node, "claim(…)", guard)
        elif name == "Machine" and _mentions(node, guard):
            self._add(node, "a second Machine", guard)


def find_writes(
    sources: Iterable[tuple[str, str]], guards: Iterable[Guard] = GUARDS
) -> tuple[list[Finding], set[tuple[str, str]]]:
    """The writes outside their allowed files, and the exemptions that matched something."""
    findings: list[Finding] = []
    used: set[tuple[str, str]] = set()
    guards = tuple(guards)
    for path, text in sources:
        scanner = _Scanner(path, guards)
        scanner.visit(ast.parse(text, filename=path))
        scanner.finish()
        findings.extend(scanner.findings)
        used |= scanner.exempt_used
    return findings, used
