"""MIME building, the .eml folder transport, SMTP login, and choosing a transport from config."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from edrtrial.config import Config, Settings, SmtpConfig
from edrtrial.errors import ConfigError, ServerUnavailableError
from edrtrial.models import OutboxMessage
from edrtrial.notify.mail import (
    FileTransport,
    SmtpTransport,
    build_message,
    transport_from_config,
)

SENDER = "noreply@edr-trial.example.jp"
SENDER_NAME = "EDR体験 運営事務局"
PASSWORD = "hunter2-very-secret"


def outbox_row(**fields: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "id": 17,
        "dedupe_key": "k",
        "kind": "detection_report",
        "recipient": "yamada@example.jp",
        "subject": "【EDR体験】検知レポート（2026/11/01〜2026/11/07）株式会社アクメ",
        "body_text": "株式会社アクメ\n山田 太郎 様\n",
        "body_html": "<p>株式会社アクメ</p>",
        "created_at": datetime(2026, 11, 9, 0, 0, tzinfo=UTC),
    }
    values.update(fields)
    return OutboxMessage(**values)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def test_message_headers_survive_a_round_trip() -> None:
    wire = build_message(outbox_row(), sender=SENDER, sender_name=SENDER_NAME).as_bytes()
    assert wire.isascii(), "7-bit clean: no relay needs 8BITMIME or SMTPUTF8"
    message = parse(wire)
    assert message["Subject"] == "【EDR体験】検知レポート（2026/11/01〜2026/11/07）株式会社アクメ"
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (SENDER_NAME, SENDER)
    assert message["To"] == "yamada@example.jp"
    assert message["Message-ID"] == "<edrtrial-outbox-17@edr-trial.example.jp>"
    assert message["Date"].datetime == datetime(2026, 11, 9, 0, 0, tzinfo=UTC)
    assert message["Date"].endswith("+0900")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == "株式会社アクメ\n山田 太郎 様\n"
    assert html.get_content() == "<p>株式会社アクメ</p>\n"


def test_text_only_message_and_line_breaks_in_subject() -> None:
    row = outbox_row(body_html=None, subject="Alert:\r\nBcc: victim@example.com")
    message = parse(build_message(row, sender=SENDER, sender_name=SENDER_NAME).as_bytes())
    assert message.get_content_type() == "text/plain"
    assert message["Subject"] == "Alert: Bcc: victim@example.com"  # no header injection
    assert message["Bcc"] is None


def test_bad_sender_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build_message(outbox_row(), sender="no-at-sign", sender_name="x")


def test_file_transport_writes_parseable_eml_and_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    transport = FileTransport(folder)
    transport.send(build_message(outbox_row(), sender=SENDER, sender_name=SENDER_NAME))
    again = outbox_row(body_text="二度目の送信\n")
    transport.send(build_message(again, sender=SENDER, sender_name=SENDER_NAME))

    assert [p.name for p in folder.iterdir()] == ["17-detection-report.eml"]
    message = parse((folder / "17-detection-report.eml").read_bytes())
    assert message["Message-ID"] == "<edrtrial-outbox-17@edr-trial.example.jp>"
    body = message.get_body(("plain",))
    assert body is not None and body.get_content() == "二度目の送信\n"


def test_file_transport_failure_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ServerUnavailableError, match="cannot write"):
        FileTransport(blocker).send(build_message(outbox_row(), sender=SENDER, sender_name="x"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.logins.append(session.auth_data.decode() if session.authenticated else "")
        self.messages.append(parse(envelope.original_content or envelope.content))
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"edr"
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@pytest.fixture
def auth_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def test_smtp_login_and_send(auth_server: tuple[_Inbox, int]) -> None:
    inbox, port = auth_server
    settings = SmtpConfig(
        host="127.0.0.1", port=port, starttls=False, username="edr", timeout_seconds=5
    )
    SmtpTransport(settings, SecretStr(PASSWORD)).send(
        build_message(outbox_row(), sender=SENDER, sender_name=SENDER_NAME)
    )
    assert inbox.logins == ["edr"]
    assert inbox.messages[0]["Subject"].startswith("【EDR体験】")


def test_smtp_wrong_password_never_shows_the_password(auth_server: tuple[_Inbox, int]) -> None:
    inbox, port = auth_server
    settings = SmtpConfig(
        host="127.0.0.1", port=port, starttls=False, username="edr", timeout_seconds=5
    )
    with pytest.raises(ServerUnavailableError, match="login as 'edr' refused: 535") as caught:
        SmtpTransport(settings, SecretStr("wrong-" + PASSWORD)).send(
            build_message(outbox_row(), sender=SENDER, sender_name=SENDER_NAME)
        )
    assert PASSWORD not in str(caught.value)
    assert inbox.messages == []


def _config(tmp_path: Path, mail: dict[str, Any]) -> Config:
    settings = Settings.model_validate(
        {
            "mail": {"from_address": SENDER, **mail},
            "desk": {"name": "desk", "email": "desk@example.jp"},
        }
    )
    return Config(settings, tmp_path / "config.toml")


def test_transport_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = transport_from_config(_config(tmp_path, {"outbox_dir": "out/mail"}))
    assert isinstance(files, FileTransport) and files.directory == tmp_path / "out/mail"

    monkeypatch.setenv("EDRTRIAL_TEST_SMTP_PASSWORD", PASSWORD)
    smtp = transport_from_config(
        _config(
            tmp_path,
            {
                "smtp": {
                    "host": "smtp.example.jp",
                    "username": "edr",
                    "password": "env:EDRTRIAL_TEST_SMTP_PASSWORD",
                }
            },
        )
    )
    assert isinstance(smtp, SmtpTransport)
    assert smtp.where == "smtp.example.jp:587" and smtp.settings.starttls

    monkeypatch.delenv("EDRTRIAL_TEST_SMTP_PASSWORD")
    with pytest.raises(ConfigError, match="EDRTRIAL_TEST_SMTP_PASSWORD is not set"):
        transport_from_config(
            _config(
                tmp_path,
                {
                    "smtp": {
                        "host": "smtp.example.jp",
                        "username": "edr",
                        "password": "env:EDRTRIAL_TEST_SMTP_PASSWORD",
                    }
                },
            )
        )
