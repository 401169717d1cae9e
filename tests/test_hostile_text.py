"""A hostile alert end to end: whatever an EDR or an operator writes is shown, never obeyed.

One alert whose every text field carries markup for every output (rich markup, ANSI and
OSC 8 escape sequences, HTML, markdown links, Slack mentions, CR/LF for mail headers, a
bidi override) goes from the sandbox through the poll to a ticket, the CLI (in-process and
in a real terminal), the desk's Teams, webhook and mail channels, the company's mails, the
detection report and the incident report. Each output must show each hostile string it
carries as text, and carry no live markup.
"""

from __future__ import annotations

import html
import json
import logging
import os
import pty
import re
import select as waiting
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial import logsetup
from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert
from edrtrial.sandbox import SandboxServer
from edrtrial.timeutil import jst_date
from edrtrial.untrusted import visible

import clock
from sandbox_config import sample_world, serving, settings, write_config
from test_outbox import Inbox, free_port, start_server
from test_webhooks import (
    HOOK_TOKEN,
    TEAMS_TOKEN,
    block_text,
    receiver,  # noqa: F401 (a fixture)
    secrets,  # noqa: F401 (a fixture)
)

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"

# Each string mixes the attacks aimed at every output it may reach.
HOSTILE = {
    "title": (
        "Update [link=https://evil.example/t]now[/link] [red blink]!![/] "
        "[click](https://evil.example/md) <script>alert(1)</script> <!channel>"
        "\r\nBcc: victim@evil.example"
    ),
    "description": (
        "\x1b[2J\x1b]8;;https://evil.example/osc\x07open\x1b]8;;\x07 **urgent** "
        "<img src=x onerror=alert(2)> <https://evil.example|details> \u202eexe.pdf"
    ),
    "device": "pc[bold]01[/bold]<b>x</b>\x1b[31m\u202e.evil.example",
    "user": "adm[link=https://evil.example/u]in[/link]<@U0>\x9b31m",
    "file_name": "<img src=x onerror=alert(3)>\u202efdp.exe",
    "command_line": (
        "powershell.exe -c \x1b]8;;https://evil.example/cmd\x07x\x1b]8;;\x07 "
        "[bold]y[/bold] <script>z</script>\rC:\\clean.exe"
    ),
    "url": "https://evil.example/a?b=<script>x</script>&c=[d](https://evil.example/e)",
    "note": "[link=https://evil.example/n]call back[/link] \x1b[2J <!here> \u202e",
    "cause": "<img src=x onerror=alert(4)> [x](https://evil.example/c) \x1b]8;;u\x07",
}
# What no output may carry live: terminal controls and markup that acts when rendered.
TERMINAL_CONTROLS = ("\x1b[2J", "\x1b]", "\x07", "\x9b", "\u202e", "\x1b[31m")


def lines(text: str) -> str:
    """Text with every line break as "\\n" (mail and cards normalise CR and CRLF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    with serving(sample_world(actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) keeping every mail it accepts."""
    box = Inbox()
    controller = start_server(box, free_port())
    yield box, controller.port
    controller.stop()


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def in_a_terminal(config: Path, *args: str) -> str:
    """The command's output as a real terminal receives it (a pseudo-terminal, colours on)."""
    leader, follower = pty.openpty()
    env = clock.subprocess_env({**os.environ, "COLUMNS": "1000", "TERM": "xterm-256color"})
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "edrtrial"), "--config", str(config), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    received = b""
    while True:
        ready, _, _ = waiting.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, received.decode(errors="replace")
    return received.decode()


class _Markup(HTMLParser):
    """The tags, attributes and text of an HTML document, as a browser would build them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(document: str) -> _Markup:
    parser = _Markup()
    parser.feed(document)
    parser.close()
    return parser


def mail_text(mail: EmailMessage) -> tuple[str, str | None]:
    """A mail's plain text and HTML (if it has an HTML part)."""
    plain = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    return (
        str(plain.get_content()) if plain is not None else "",  # type: ignore[attr-defined]
        str(rich.get_content()) if rich is not None else None,  # type: ignore[attr-defined]
    )


def pieces(text: str, *, cr_breaks: bool = False) -> list[str]:
    """The lines of `text` as a person sees them: controls made visible, blanks dropped.

    Cards split lines at a lone CR too (`cr_breaks`); elsewhere it is shown as ␍.
    """
    if cr_breaks:
        text = lines(text)
    return [" ".join(visible(p).split()) for p in text.split("\n") if p.strip()]


def found(output: str) -> set[str]:
    """Which hostile strings the output shows literally, every line of each.

    A line break inside a string may be kept (a CR shown as ␍) or turned into a break or a
    space (mail headers, one-line summaries, cards): the text between breaks stays whole.
    """
    flat = " ".join(output.split())
    return {
        key
        for key, value in HOSTILE.items()
        if any(all(p in flat for p in pieces(value, cr_breaks=cr)) for cr in (False, True))
    }


def no_live_html(document: str) -> None:
    """Nothing a browser or mail reader would run, load or follow from the hostile text."""
    markup = parsed(document)
    assert "script" not in markup.tags
    assert not [name for name, _ in markup.attributes if name.startswith("on")]
    assert not [v for _, v in markup.attributes if v and "evil.example" in v]
    assert not [c for c in document if c in "\x1b\x07\x9b\u202e"]


def hostile_config(tmp_path: Path, sandbox: SandboxServer, database_url: str, port: int) -> Path:
    """The sample programme, mail through a real SMTP server, the desk told on Teams first,
    then by webhook, then by mail (the escalation order)."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    data["mail"]["smtp"] = {"host": "127.0.0.1", "port": port, "starttls": False}
    data["desk"]["channels"] = [
        {"name": "desk-teams", "kind": "teams", "url": "env:EDRTRIAL_TEST_TEAMS_URL"},
        {
            "name": "desk-hook",
            "kind": "webhook",
            "url": "env:EDRTRIAL_TEST_HOOK_URL",
            "signing_secret": "env:EDRTRIAL_TEST_HOOK_SECRET",
        },
        {"name": "desk-mail", "kind": "mail", "to": "desk@example.jp"},
    ]
    return write_config(tmp_path / "config.toml", data)


def test_a_hostile_alert_is_shown_literally_in_every_output(
    tmp_path,
    now,
    sandbox,
    database_url,
    inbox,
    receiver,  # noqa: F811
    secrets,  # noqa: F811
):
    box, smtp_port = inbox
    world = sandbox.world
    config = hostile_config(tmp_path, sandbox, database_url, smtp_port)
    cli(config, "db", "upgrade")
    world.clear_tenant(SAKURA)  # the hostile alert is the company's only one
    cli(config, "poll")  # the first poll (nothing yet): the alert is then notified on its own

    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    world.rename_device(SAKURA, device, HOSTILE["device"], user=HOSTILE["user"])
    text = {k: HOSTILE[k] for k in ("title", "description", "file_name", "command_line", "url")}
    world.add_alerts(SAKURA, "c2_beacon", 1, device_id=device, severity="high", text=text)
    cli(config, "poll")
    cli(config, "run-job", "outbox")  # the desk's Teams card and the company's mail
    # Nobody acknowledges: the ticket escalates to the webhook, then to the desk's mailbox.
    for minutes in (31, 62):
        with clock.travel(now + timedelta(minutes=minutes)):
            cli(config, "run-job", "desk")
            cli(config, "run-job", "outbox")

    # --wide: the long title whole, on its row's one line
    listing = cli(config, "tickets", "--company", "sakura-seisakusho", "--wide").output
    [queued] = json.loads(cli(config, "tickets", "--company", "sakura-seisakusho", "--json").output)
    tid = str(queued["id"])
    assert re.search(rf"^{tid} +P1 ", listing, re.M)
    cli(config, "ticket", "--by", "tanaka", "note", tid, HOSTILE["note"])
    refused = cli(config, "ticket", "isolate", tid, "--device", "pc-99", "--yes", code=2).output
    asked = CliRunner().invoke(
        main, ["--config", str(config), "ticket", "isolate", tid], input="n\n"
    )
    assert asked.exit_code == 0 and "nothing done" in asked.output
    summary = {"--what": HOSTILE["title"], "--cause": HOSTILE["cause"]}
    steps = {"--when": "today", "--handling": "isolated", "--effect": "none", **summary}
    cli(config, "ticket", "--by", "tanaka", "resolve", tid, *sum(steps.items(), ()))
    shown = cli(config, "ticket", "show", tid).output
    terminal = in_a_terminal(config, "ticket", "show", tid)
    today = jst_date(now)
    report_file = tmp_path / "report.html"
    period = ("--from", str(today - timedelta(days=6)), "--to", str(today))
    company = ("--company", "sakura-seisakusho")
    cli(config, "report", *company, *period, "--output", str(report_file), "--no-mail")

    # --- the terminal: text shown, no markup interpreted, no control reaching it
    [error_line] = refused.strip().splitlines()
    assert error_line.startswith("error: ticket #")
    for output in (listing, shown, terminal, refused, asked.output):
        assert not [c for c in output if c in "\x07\x9b\u202e"]
        assert "\x1b[2J" not in output and "\x1b]" not in output
    assert "\x1b[" not in listing + shown + refused, "CliRunner is no terminal: no colour"
    assert "[link=https://evil.example/t]now[/link]" in shown

    # --- Teams, webhook and the desk's mailbox, in escalation order
    cards = [h.json() for h in receiver.hits if h.path == "/" + TEAMS_TOKEN]
    card_text = "\n".join(
        block_text(b)
        for card in cards
        for b in card["attachments"][0]["content"]["body"]
        if f"#{tid}" in block_text(card["attachments"][0]["content"]["body"][0])
    )
    for card in cards:
        body = card["attachments"][0]["content"]["body"]
        assert {b["type"] for b in body} == {"RichTextBlock"}, "never markdown"
    assert not [c for c in card_text if c in "\x1b\x07\x9b\u202e"]
    hooks = [h.json() for h in receiver.hits if h.path == "/" + HOOK_TOKEN]
    hook = next(h for h in hooks if h["id"].startswith(f"escalation:ticket:{tid}:"))
    assert "<" not in hook["subject"] + hook["text"], "no <!channel>, no <url|label>"
    hook_text = html.unescape(hook["subject"] + "\n" + hook["text"])

    def mails(to: str, marker: str) -> list[EmailMessage]:
        return [m for m in box.messages if m["To"] == to and marker in str(m["Subject"])]

    [desk_mail] = mails("desk@example.jp", f"#{tid} ")
    [company_mail] = mails("it@sakura.example.jp", "検知しました")
    [incident_mail] = mails("it@sakura.example.jp", "インシデント対応のご報告")
    for mail in (desk_mail, company_mail, incident_mail):
        assert "Bcc" not in mail and "\n" not in str(mail["Subject"])
        assert not [c for c in str(mail["Subject"]) if c in "\x1b\u202e"]
        plain, rich = mail_text(mail)
        assert not [c for c in plain if c in "\x1b\x07\x9b\u202e"]
        if rich is not None:
            no_live_html(rich)
    report = report_file.read_text(encoding="utf-8")
    no_live_html(report)
    incident_html = mail_text(incident_mail)[1]
    assert incident_html is not None

    def mail_view(mail: EmailMessage) -> str:
        return str(mail["Subject"]) + "\n" + mail_text(mail)[0]

    def html_view(document: str) -> str:
        return "".join(parsed(document).text)

    seen = {
        "CLI tickets (CliRunner)": found(listing),
        "CLI ticket show (CliRunner)": found(shown),
        "CLI ticket show (terminal)": found(re.sub(r"\x1b\[[0-9;]*m", "", terminal)),
        "CLI error line": found(refused),
        "CLI confirmation prompt": found(asked.output),
        "desk Teams card": found(card_text),
        "desk webhook": found(hook_text),
        "desk mail": found(mail_view(desk_mail)),
        "company mail": found(mail_view(company_mail)),
        "incident report mail (text)": found(mail_view(incident_mail)),
        "incident report mail (HTML)": found(html_view(incident_html)),
        "detection report (HTML)": found(html_view(report)),
    }
    # Each output shows what it is about, every hostile string of it literally.
    assert seen == {
        "CLI tickets (CliRunner)": {"title", "device"},
        "CLI ticket show (CliRunner)": {"title", "device", "note", "cause"},
        "CLI ticket show (terminal)": {"title", "device", "note", "cause"},
        "CLI error line": {"device"},  # "names no device 'pc-99' (devices: …)"
        "CLI confirmation prompt": {"device"},  # "Isolate <device> of <company>?"
        "desk Teams card": {"title", "device"},
        "desk webhook": {"title", "device"},
        "desk mail": {"title", "device"},
        "company mail": {"device"},  # it names the kind of detection in plain words
        "incident report mail (text)": {"title", "device", "cause"},  # title as "what"
        "incident report mail (HTML)": {"title", "device", "cause"},
        "detection report (HTML)": {"title", "device"},
    }
    # The evidence no output shows yet reached the store as sent, to be shown as data later.
    with make_sessions(make_engine(database_url))() as session:
        stored = session.scalars(select(Alert).where(Alert.title == HOSTILE["title"])).one()
        kept = json.dumps([stored.description, stored.raw], ensure_ascii=False)
    for key in ("description", "user", "file_name", "command_line", "url"):
        assert json.dumps(HOSTILE[key], ensure_ascii=False)[1:-1] in kept, key
    print(f"hostile strings shown literally per output (of {len(HOSTILE)}):")
    for name, keys in seen.items():
        print(f"  {name}: {len(keys)} {sorted(keys)}")


@pytest.fixture
def root_logger() -> Iterator[None]:
    """Logging set up by the test is put back as it was (pytest's capture handlers)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_log_line_quoting_edr_text_shows_its_controls(capsys, root_logger):
    logsetup.configure("INFO")
    logging.getLogger("edrtrial.ingest").warning("quarantined alert: %s", HOSTILE["description"])
    logsetup.configure("INFO", json_lines=True)
    logging.getLogger("edrtrial.ingest").warning("device %s", HOSTILE["device"])

    plain, json_line = capsys.readouterr().err.splitlines()
    assert "\x1b" not in plain and "\x07" not in plain and "\u202e" not in plain
    assert "quarantined alert: ␛[2J␛]8;;https://evil.example/osc␇open" in plain
    message = json.loads(json_line)["msg"]
    assert message == "device pc[bold]01[/bold]<b>x</b>␛[31m\\u202e.evil.example"
