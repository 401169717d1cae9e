"""Live playbooks: an edit takes effect on refresh; a broken edit keeps the last good rules."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrtrial import logsetup
from edrtrial.errors import PlaybookError
from edrtrial.playbooks import AlertFacts, Playbook
from edrtrial.playbooks.live import LivePlaybooks, channel_check

HIGH = AlertFacts(title="x", severity="high", company_key="acme-kogyo", business_hours=True)


def rule(name: str, priority: str) -> str:
    return f'[[rules]]\nname = "{name}"\nseverity = "high"\npriority = "{priority}"\n'


def save(path: Path, text: str) -> None:
    """Write and move the mtime on, as a later save would (file systems with coarse clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    after = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(after, after))


def decided(live: LivePlaybooks) -> tuple[str, tuple[str, ...]]:
    decision = live.current.evaluate(HIGH)
    return decision.priority, decision.matched


def test_edit_break_and_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "local.toml"
    save(path, rule("first", "P2"))
    live = LivePlaybooks([path])
    assert decided(live) == ("P2", ("first",))
    assert live.refresh() is None  # nothing changed

    save(path, rule("second", "P3"))
    assert live.refresh() is None
    assert decided(live) == ("P3", ("second",))

    save(path, rule("second", "P3") + '\n[[rules]]\nname = "broken"\npriority = "P9"\n')
    with caplog.at_level(logging.ERROR, logger="edrtrial.playbooks.live"):
        error = live.refresh()
    assert error is not None and error.startswith(f"{path}:6: rule 'broken': priority")
    assert decided(live) == ("P3", ("second",))  # the last good rules stay in force
    assert live.error == error
    refused = caplog.records[-1].details  # each problem, below the message
    assert [line for line in refused if line.startswith(f"{path}:6: rule 'broken'")]
    assert "previous 1 rules stay in force" in caplog.text
    assert live.refresh() is None  # the same broken file is not tried again

    save(path, rule("third", "P1"))
    assert live.refresh() is None
    assert decided(live) == ("P1", ("third",))
    assert live.error is None


@pytest.fixture
def root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_refused_reload_logs_each_problem_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], root_logger: None
) -> None:
    logsetup.configure("INFO")
    path = tmp_path / "local.toml"
    save(path, rule("first", "P2"))
    live = LivePlaybooks([path])
    save(path, '[[rules]]\nname = "x"\nseverity = "hgh"\npriority = "P9"\n')

    assert live.refresh() is not None

    lines = capsys.readouterr().err.splitlines()
    assert "␊" not in "".join(lines), lines
    assert lines[0].endswith("playbook reload refused, the previous 1 rules stay in force:")
    assert [line.strip().split(": ")[2] for line in lines[1:]] == ["priority", "severity"]
    assert all(line.startswith(f"    {path}:1: rule 'x': ") for line in lines[1:]), lines


def test_a_file_that_appears_or_disappears_is_noticed(tmp_path: Path) -> None:
    local, shipped = tmp_path / "local.toml", tmp_path / "shipped.toml"
    save(shipped, rule("shipped", "P2"))
    save(local, rule("local", "P4"))
    live = LivePlaybooks([local, shipped])
    assert decided(live) == ("P4", ("local", "shipped"))

    local.unlink()
    error = live.refresh()
    assert error == f"{local}: playbook file not found"
    assert decided(live) == ("P4", ("local", "shipped"))

    save(local, rule("local-again", "P3"))
    assert live.refresh() is None
    assert decided(live) == ("P3", ("local-again", "shipped"))


def test_a_file_replaced_by_rename_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    save(path, rule("old", "P2"))
    live = LivePlaybooks([path])
    staged = tmp_path / "local.toml.new"
    staged.write_text(rule("new", "P3"), encoding="utf-8")
    stat = path.stat()
    os.utime(staged, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: editors do this
    staged.replace(path)
    assert live.refresh() is None
    assert decided(live) == ("P3", ("new",))


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    save(path, '[[rules]]\nname = "a"\nip = "10.0.0.300"\nticket = true\n')
    with pytest.raises(PlaybookError, match=rf"^{path}:1: rule 'a': ip: '10.0.0.300'"):
        LivePlaybooks([path])
    with pytest.raises(PlaybookError, match="playbook file not found"):
        LivePlaybooks([tmp_path / "missing.toml"])


def test_the_check_applies_on_every_load(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    escalating = rule("vip", "P1") + 'escalate = "teams-soc"\n'
    save(path, escalating)
    with pytest.raises(
        PlaybookError,
        match=(
            r"local.toml:1: rule 'vip': escalate: no desk channel 'teams-soc' in the config "
            r"\(it has: desk\)"
        ),
    ):
        LivePlaybooks([path], check=channel_check(["desk"]))

    save(path, rule("plain", "P2"))
    live = LivePlaybooks([path], check=channel_check(["desk"]))
    save(path, escalating)
    assert live.refresh() is not None
    assert decided(live) == ("P2", ("plain",))
    save(path, escalating.replace("teams-soc", "desk"))
    assert live.refresh() is None
    assert live.current.channels() == frozenset({"desk"})


def test_readers_in_other_threads_always_see_a_whole_playbook(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    save(path, rule("r0", "P2"))
    live = LivePlaybooks([path])
    stop = threading.Event()
    seen: list[Playbook] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                playbook = live.current
                assert len(playbook.rules) == 1
                seen.append(playbook)
                time.sleep(0.0005)
        except BaseException as err:  # noqa: BLE001 - reported to the main thread
            failures.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    refreshers = []
    for n in range(1, 11):
        save(path, rule(f"r{n}", "P3"))
        refreshers = [threading.Thread(target=live.refresh) for _ in range(3)]
        for thread in refreshers:
            thread.start()
        for thread in refreshers:
            thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not failures
    assert live.current.rules[0].name == "r10"
    assert seen
