"""EDR text that must stay one line does: a line break in a title or a device name cannot
write a line the reader takes for ours, and invisible characters are shown.

A title, a name, a table cell, an error, a prompt or a log message shows a line break as
`␊`; only a free-text body (a note, a summary field, a message) keeps its lines, under its
label.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.table import Table
from sqlalchemy import select
from test_desk_notices import FACTS, alert, company, ticket

from edrtrial import logsetup
from edrtrial.cli.common import SafeConsole
from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert, Company, OutboxMessage, Tenant
from edrtrial.notify.notices import desk_ticket_notice
from edrtrial.notify.webhooks import teams_payload
from edrtrial.sandbox import SandboxServer
from edrtrial.untrusted import one_line

from sandbox_config import sample_world, serving, settings, write_config

SAKURA, MIDORI = (f"5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c0{n}" for n in (1, 2))
FORGED = f"みどり商事 (midori-shoji, tenant {MIDORI})  state: closed"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    with serving(sample_world(), tmp_path / "sandbox") as server:
        yield server


def cli(config: Path, *args: str, code: int | None = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], input=input)
    if code is not None:
        assert result.exit_code == code, (result.output, result.exception)
    return result


def polled_ticket(
    tmp_path: Path, server: SandboxServer, database_url: str, *, title: str = "", name: str = ""
) -> tuple[Path, int]:
    """A sakura ticket from one alert on one device, with the title or device name given."""
    data = settings(
        database_url,
        base_url=server.base_url,
        state_dir=server.state_dir,
        mail_dir=tmp_path / "mail",
    )
    config = write_config(tmp_path / "config.toml", data)
    cli(config, "db", "upgrade")
    world = server.world
    world.clear_tenant(SAKURA)
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    if name:
        world.rename_device(SAKURA, device, name)
    text = {"title": title} if title else {}
    world.add_alerts(SAKURA, "c2_beacon", 1, device_id=device, severity="high", text=text)
    cli(config, "poll")
    with make_sessions(make_engine(database_url))() as session:
        ids = session.scalars(
            select(Alert.ticket_id)
            .join(Tenant, Alert.tenant_id == Tenant.id)
            .join(Company, Tenant.company_id == Company.id)
            .where(Company.key == "sakura-seisakusho", Alert.ticket_id.is_not(None))
        ).all()
    return config, ids[0]


def test_an_alert_title_cannot_write_a_line_of_ticket_show(tmp_path, sandbox, database_url):
    config, tid = polled_ticket(tmp_path, sandbox, database_url, title="Benign test\n" + FORGED)

    shown = cli(config, "ticket", "show", str(tid)).output

    assert not [line for line in shown.splitlines() if line.startswith(FORGED)], shown
    assert f"Benign test␊{FORGED}" in shown


def test_a_summary_field_keeps_its_lines_indented_under_its_label(tmp_path, sandbox, database_url):
    config, tid = polled_ticket(tmp_path, sandbox, database_url)
    cli(config, "ticket", "ack", str(tid))
    what = "PowerShell fetched a payload.\nThe device was isolated."
    fields = ["--when", "today", "--what", what, "--cause", "x", "--handling", "y"]
    cli(config, "ticket", "resolve", str(tid), *fields, "--effect", "z", "--no-report")

    shown = cli(config, "ticket", "show", str(tid)).output.splitlines()

    second = [line for line in shown if line.strip() == "The device was isolated."]
    assert second and second[0].startswith("      "), shown


def test_a_cli_error_quoting_a_device_name_stays_on_one_line(tmp_path, sandbox, database_url):
    name = "pc-01\nisolate of pc-01: succeeded .sakura.example.jp"
    config, tid = polled_ticket(tmp_path, sandbox, database_url, name=name)

    refused = cli(config, "ticket", "isolate", str(tid), "--device", "pc-99", "--yes", code=2)

    assert len(refused.output.strip().splitlines()) == 1, refused.output
    assert "pc-01␊isolate of pc-01" in refused.output


def test_the_isolate_confirmation_is_one_line(tmp_path, sandbox, database_url):
    name = "pc-01\nIsolate pc-02 of みどり商事?.sakura.example.jp"
    config, tid = polled_ticket(tmp_path, sandbox, database_url, name=name)

    asked = cli(config, "ticket", "isolate", str(tid), input="n\n")

    assert not [ln for ln in asked.output.splitlines() if ln.startswith("Isolate pc-02")]
    assert "nothing done" in asked.output


def test_a_desk_notice_and_its_teams_card_keep_a_device_name_on_its_line():
    tick = ticket()
    first = alert(1)
    first.device_names = ["pc-01\n" + FORGED]
    mail = desk_ticket_notice(company(), tick, [first], FACTS)

    assert not [line for line in mail.text.splitlines() if line.startswith(FORGED)], mail.text
    message = OutboxMessage(subject=mail.subject, body_text=mail.text)
    blocks = teams_payload(message)["attachments"][0]["content"]["body"]
    texts = [b["inlines"][0]["text"] for b in blocks]
    assert not [text for text in texts if text.startswith(FORGED)], texts


@pytest.fixture
def root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_device_name_cannot_forge_a_log_line_for_another_tenant(capsys, root_logger):
    logsetup.configure("INFO")
    name = f"pc-01\n2026-12-05 10:00:00,000 INFO    [{MIDORI}] edrtrial.devices.send: all clear"
    with logsetup.tenant_context(SAKURA):
        logging.getLogger("edrtrial.devices.send").warning("isolate of %s failed", name)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f"[{SAKURA}]" in lines[0], lines


HOSTILE_ERROR = "title \x1b[2J\x1b]8;;https://evil.example\x07open\x1b]8;;\x07\n2026-12-05 forged"


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_logged_exception_shows_edr_text_controls_as_marks(capsys, root_logger, json_lines):
    logsetup.configure("INFO", json_lines=json_lines)
    try:
        raise ValueError(HOSTILE_ERROR)
    except ValueError:
        logging.getLogger("edrtrial.service.scheduler").exception("job poll failed")

    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err, repr(err[-160:])
    if json_lines:
        assert "\x1b" not in json.loads(err)["exc"]
    else:  # the traceback is below its line, indented: no line of it passes for a log line
        assert [line for line in err.splitlines() if not line.startswith(" ")] == [
            err.splitlines()[0]
        ], err


INVISIBLE = ("\u200b", "\u2060", "\ufeff", "\u00ad", "\U000e0041")


def test_invisible_characters_in_device_names_are_shown():
    """`pc-01` and `pc-01` + U+200B would read the same in a listing."""
    with open("/dev/null", "w") as sink:
        console = SafeConsole(width=80, markup=False, emoji=False, record=True, file=sink)
        table = Table("device")
        for mark in INVISIBLE:
            table.add_row("pc-01" + mark)
        console.print(table)
    out = console.export_text()
    assert not [c for c in out if c in INVISIBLE], repr(out)
    assert len({line for line in out.splitlines() if "pc-01" in line}) == len(INVISIBLE), out


def test_ticket_show_keeps_the_lines_of_a_note_and_a_message(tmp_path, sandbox, database_url):
    config, tid = polled_ticket(tmp_path, sandbox, database_url)
    cli(config, "ticket", "note", str(tid), "called the contact\nshe will call back at 3")
    cli(config, "ticket", "notify", str(tid), "We will call you at 15:00.\nKeep the PC on.")

    shown = cli(config, "ticket", "show", str(tid)).output

    assert "␊" not in shown, shown
    lines = shown.splitlines()
    for first, second in (
        ("called the contact", "she will call back at 3"),
        ("We will call you at 15:00.", "Keep the PC on."),
    ):
        at = lines.index("      " + first)  # under its heading: when, what, by whom
        assert lines[at + 1] == "      " + second, shown
        assert " by cli:" in lines[at - 1] and lines[at - 1].startswith("  "), shown


# Default-ignorable characters that are not format characters (Cf): a combining grapheme
# joiner, variation selectors, Hangul fillers, a Khmer inherent vowel, a Mongolian selector.
IGNORABLE = ("\u034f", "\ufe00", "\ufe0f", "\U000e0100", "\u3164", "\u115f", "\u1160")
IGNORABLE += ("\uffa0", "\u17b4", "\u180b")


@pytest.mark.parametrize("invisible", IGNORABLE)
def test_a_default_ignorable_character_in_a_name_is_shown(invisible):
    """`pc-01` and `pc-01` + a variation selector read the same in a listing."""
    with open("/dev/null", "w") as sink:
        console = SafeConsole(width=80, markup=False, emoji=False, record=True, file=sink)
        console.print("pc-01" + invisible)
    out = console.export_text().strip()
    code = ord(invisible)
    assert out in (f"pc-01\\u{code:04x}", f"pc-01\\U{code:08x}"), repr(out)


def test_text_a_reader_sees_is_left_as_it_is():
    """Japanese, accents, emoji and symbols are not marks: only what shows as nothing is."""
    text = "株式会社アクメ　経理部 PC-ｹｲﾘ-01 café ⚠ ✓ 한글 ①"
    assert one_line(text) == text


def test_the_quick_check_never_passes_a_character_that_is_marked():
    """Most text is cleared without looking at each character; over every code point, none
    that would be marked gets through that check."""
    from edrtrial import untrusted

    missed = [
        f"U+{code:04X}"
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF
        and untrusted._marked(chr(code))
        and untrusted._nothing_to_mark(chr(code))
    ]
    assert missed == []
