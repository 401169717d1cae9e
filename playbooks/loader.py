"""Reads one playbook file; every mistake becomes a PlaybookError naming the file and line."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edrtrial.errors import PlaybookError
from edrtrial.playbooks.schema import DefaultsSpec, PlaybookSpec, RuleSpec

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_RULES_HEADER = re.compile(r"""^\s*\[\[\s*(rules|"rules"|'rules')\s*\]\]\s*(#.*)?$""")


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A validated playbook file and the line on which each of its rules starts."""

    path: Path
    spec: PlaybookSpec
    rule_lines: tuple[int, ...]


def read_playbook(path: Path) -> ParsedFile:
    """Read, parse and validate one file, or raise PlaybookError with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PlaybookError(f"{path}: playbook file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise PlaybookError(f"{path}: cannot read playbook file: {err}") from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PlaybookError(_toml_message(path, text, err)) from err
    lines = text.split("\n")  # TOML counts only \n as a line break
    rule_lines = _rule_lines(lines, raw)
    try:
        spec = PlaybookSpec.model_validate(raw)
    except ValidationError as err:
        problems = sorted(
            (_line_for(lines, rule_lines, item["loc"]), _describe(raw, item))
            for item in err.errors()
        )
        raise PlaybookError.listing(
            f"{path}:{line}: {message}" for line, message in problems
        ) from err
    return ParsedFile(path=path, spec=spec, rule_lines=rule_lines)


def _toml_message(path: Path, text: str, err: tomllib.TOMLDecodeError) -> str:
    """`file:line:col: …`, with tomllib's position moved to the front where editors look."""
    message = str(err)
    found = _TOML_POSITION.search(message)
    if found:
        where = f"{found.group(1)}:{found.group(2)}"
        message = message[: found.start()]
    else:  # "(at end of document)"
        where = str(max(1, len(text.rstrip("\n").split("\n"))))
    return f"{path}:{where}: not valid TOML: {message}"


def _rule_lines(lines: list[str], raw: dict[str, Any]) -> tuple[int, ...]:
    """The 1-based line where each `[[rules]]` table starts (the `rules =` line if inline)."""
    rules = raw.get("rules")
    count = len(rules) if isinstance(rules, list) else 0
    headers = [n for n, line in enumerate(lines) if _RULES_HEADER.match(line)]
    if len(headers) > count:
        # Some header-like lines sit inside multi-line strings: keep those after which
        # the text before them still parses (a string cannot be open there).
        headers = [n for n in headers if _parses("\n".join(lines[:n]))]
    if len(headers) == count:
        return tuple(n + 1 for n in headers)
    key_line = _top_level_key_line(lines, "rules")
    return (key_line,) * count


def _parses(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _top_level_key_line(lines: list[str], key: str) -> int:
    """Where a top-level key or table is written; line 1 if it cannot be found."""
    name = rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')"""
    table = re.compile(rf"^\s*\[{{1,2}}\s*{name}\s*[.\]]")
    assignment = re.compile(rf"^\s*{name}\s*[=.]")
    in_root = True  # plain `key =` lines are top-level only before the first table header
    for number, line in enumerate(lines, start=1):
        if table.match(line):
            return number
        in_root = in_root and not line.lstrip().startswith("[")
        if in_root and assignment.match(line):
            return number
    return 1


def _line_for(lines: list[str], rule_lines: tuple[int, ...], loc: tuple[int | str, ...]) -> int:
    if not loc:
        return 1
    if loc[0] == "rules" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(rule_lines):
        return rule_lines[loc[1]]
    names: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        names.append(part)
    return _table_line(lines, names)


def _table_line(lines: list[str], names: list[str]) -> int:
    """The deepest `[a.b]` header written for the path, or the `key =` line inside it."""
    for depth in range(len(names), 0, -1):
        dotted = r"\s*\.\s*".join(re.escape(name) for name in names[:depth])
        header = re.compile(rf"^\s*\[\s*{dotted}\s*\]\s*(#.*)?$")
        start = next((n for n, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            continue
        if depth < len(names):
            key = re.compile(rf"^\s*{re.escape(names[depth])}\s*=")
            for number in range(start + 1, len(lines)):
                if lines[number].lstrip().startswith("["):
                    break
                if key.match(lines[number]):
                    return number + 1
        return start + 1
    return _top_level_key_line(lines, names[0]) if names else 1


def _describe(raw: dict[str, Any], item: ErrorDetails) -> str:
    """`rule 'name': key: problem`, in words an operator can act on."""
    loc = tuple(item["loc"])
    where, model, rest = _subject(raw, loc)
    field = _path(rest)
    kind = item["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = difflib.get_close_matches(key, list(model.model_fields), n=1) if model else []
        message = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        field = _path(rest[:-1])
    elif kind == "missing" and rest == ("name",):
        message = 'rule without a name: add name = "…"'
        field = ""
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":
        message = str(item.get("ctx", {}).get("error", item["msg"]))
    else:
        message = item["msg"]
    return ": ".join(part for part in (where, field, message) if part)


def _path(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _subject(
    raw: dict[str, Any], loc: tuple[int | str, ...]
) -> tuple[str, type[BaseModel] | None, tuple[int | str, ...]]:
    """Who the error is about, the model that holds the key, and the rest of the path."""
    if loc[:1] == ("rules",) and len(loc) > 1 and isinstance(loc[1], int):
        rules = raw.get("rules")
        rule = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = rule.get("name") if isinstance(rule, dict) else None
        who = f"rule {name!r}" if isinstance(name, str) else f"rules[{loc[1]}]"
        return who, RuleSpec, loc[2:]
    if loc[:1] == ("defaults",):
        return "[defaults]", DefaultsSpec, loc[1:]
    return "", PlaybookSpec, loc
