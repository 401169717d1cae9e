"""A wrong playbook file is refused with its path, the right line and what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edrtrial.errors import PlaybookError
from edrtrial.playbooks import load_playbooks

GOOD_RULE = '[[rules]]\nname = "ok"\nseverity = "high"\npriority = "P1"\n'

# (case id, file text, line the error must point at, words the message must contain)
CASES = [
    (
        "toml-syntax",
        'description = "x"\n\n[[rules]]\nname = "a"\npriority = P1\n',
        5,
        ["not valid TOML", "Invalid value"],
    ),
    ("toml-unclosed-string", '[[rules]]\nname = "a\npriority = "P1"\n', 2, ["not valid TOML"]),
    (
        "unknown-key-in-second-rule",
        GOOD_RULE + '\n# why\n[[rules]]\nname = "b"\npriorty = "P2"\n',
        7,
        ["rule 'b'", "unknown key 'priorty'", "did you mean 'priority'?"],
    ),
    (
        "bad-priority",
        GOOD_RULE + '\n[[rules]]\nname = "b"\npriority = "P5"\n',
        6,
        ["rule 'b'", "priority must be one of P1, P2, P3, P4", "'P5'"],
    ),
    (
        "regex-does-not-compile",
        '[[rules]]\nname = "a"\ntitle_regex = ["ok", "(unclosed"]\nticket = true\n',
        1,
        ["rule 'a'", "title_regex", "'(unclosed' does not compile", "missing )"],
    ),
    (
        "rule-without-name",
        GOOD_RULE + '\n[[rules]]\nseverity = "low"\npriority = "P3"\n',
        6,
        ["rules[1]", "rule without a name"],
    ),
    (
        "bad-rule-name",
        '[[rules]]\nname = "has space"\nticket = true\n',
        1,
        ["'has space'", "letters, digits"],
    ),
    (
        "duplicate-name-same-file",
        GOOD_RULE + "\n" + GOOD_RULE.replace("high", "low"),
        6,
        ["rule 'ok'", "duplicate rule name", "first defined at", ":1)"],
    ),
    (
        "duplicate-name-other-case",
        GOOD_RULE + "\n" + GOOD_RULE.replace('"ok"', '"OK"'),
        6,
        ["duplicate rule name"],
    ),
    (
        "unknown-severity",
        '\n\n[[rules]]\nname = "a"\nseverity = "hgih"\npriority = "P1"\n',
        3,
        ["unknown severity 'hgih'", "informational"],
    ),
    (
        "unknown-status",
        '[[rules]]\nname = "a"\nstatus = "open"\nticket = true\n',
        1,
        ["unknown status 'open'"],
    ),
    (
        "bad-mitre",
        '[[rules]]\nname = "a"\nmitre = "1059"\nticket = true\n',
        1,
        ["'1059' must look like T1059"],
    ),
    (
        "bool-as-text",
        '[[rules]]\nname = "a"\nticket = "yes"\n',
        1,
        ["rule 'a'", "ticket", "valid boolean"],
    ),
    (
        "empty-list",
        '[[rules]]\nname = "a"\ntitle = []\nticket = true\n',
        1,
        ["title", "at least 1 item"],
    ),
    (
        "blank-title",
        '[[rules]]\nname = "a"\ntitle = ""\nticket = true\n',
        1,
        ["would match every alert"],
    ),
    ("blank-suppress", '[[rules]]\nname = "a"\nsuppress = " "\n', 1, ["needs a reason"]),
    (
        "rule-does-nothing",
        '[[rules]]\nname = "a"\nseverity = "low"\n',
        1,
        ["rule 'a'", "sets no outcome"],
    ),
    (
        "unknown-top-level-key",
        'description = "x"\nrule = "oops"\n\n' + GOOD_RULE,
        2,
        ["unknown key 'rule'", "did you mean 'rules'?"],
    ),
    (
        "unknown-defaults-key",
        "# top\n[defaults]\nticket = false\nnotify = true\n",
        4,
        ["[defaults]", "unknown key 'notify'"],
    ),
    (
        "bad-default-priority",
        '[defaults]\nticket = false\npriority = "high"\n\n' + GOOD_RULE,
        3,
        ["[defaults]", "priority", "must be one of"],
    ),
    (
        "bad-severity-in-table",
        '[defaults]\nticket = false\n\n[defaults.severity_priority]\ncritical = "P1"\n',
        4,
        ["unknown severity 'critical'"],
    ),
    (
        "header-inside-multiline-string",
        'description = """\n[[rules]]\n"""\n\n' + GOOD_RULE + '\n[[rules]]\nname = "b"\n'
        "ticket = 1\n",
        10,
        ["rule 'b'", "ticket"],
    ),
    (
        "inline-array-of-rules",
        'description = "x"\nrules = [\n  { name = "a", ticket = true },\n'
        '  { name = "b", tickt = true },\n]\n',
        2,
        ["rule 'b'", "unknown key 'tickt'"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_file_is_refused_with_file_line_and_reason(
    tmp_path: Path, text: str, line: int, words: list[str]
) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path])
    message = str(caught.value)
    first = message.splitlines()[0]
    assert re.match(rf"^{re.escape(str(path))}:{line}(:\d+)?: ", first), message
    for word in words:
        assert word in message, message


def test_duplicate_across_files_names_both_places(tmp_path: Path) -> None:
    first = tmp_path / "local.toml"
    first.write_text(GOOD_RULE, encoding="utf-8")
    second = tmp_path / "shipped.toml"
    second.write_text("# x\n\n" + GOOD_RULE, encoding="utf-8")
    with pytest.raises(
        PlaybookError,
        match=re.escape(f"{second}:3: rule 'ok': duplicate rule name (first defined at {first}:1)"),
    ):
        load_playbooks([first, second])


def test_every_problem_in_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(
        '[[rules]]\nname = "a"\npriority = "P9"\n\n[[rules]]\nname = "b"\nsevrity = "low"\n'
        "ticket = true\n",
        encoding="utf-8",
    )
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path])
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:1", f"{path}:5"]


def test_missing_file_and_empty_list_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PlaybookError, match=re.escape(f"{missing}: playbook file not found")):
        load_playbooks([missing])
    with pytest.raises(PlaybookError, match="no playbook files given"):
        load_playbooks([])


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[rules]]\nname = "caf\xe9"\nticket = true\n'.encode("latin-1"))
    with pytest.raises(PlaybookError, match=re.escape(f"{path}: cannot read playbook file")):
        load_playbooks([path])
