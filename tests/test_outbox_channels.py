"""The outbox routes each message by channel: mail to SMTP, Teams and webhooks over HTTP.

Every test runs on the `sessions` database, so on PostgreSQL too in CI.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import Config, SmtpConfig
from edrtrial.config import Settings as AppSettings
from edrtrial.db import transaction
from edrtrial.models import OutboxMessage
from edrtrial.notify.mail import SmtpTransport
from edrtrial.notify.outbox import DeliveryStats, deliver_due, enqueue
from edrtrial.notify.webhooks import WebhookTransport
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import utcnow

from test_outbox import Inbox, free_port, start_server
from test_webhooks import (
    HOOK_TOKEN,
    SIGNING_SECRET,
    TEAMS_TOKEN,
    Receiver,
    block_text,
    channels,
    closed_port,
    leaked,
    receiver,  # noqa: F401 (a fixture)
    secrets,  # noqa: F401 (a fixture)
)

SENDER = "noreply@edr-trial.example.jp"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, SmtpTransport]]:
    inbox = Inbox()
    controller = start_server(inbox, free_port())
    settings = SmtpConfig(host="127.0.0.1", port=controller.port, starttls=False, timeout_seconds=5)
    try:
        yield inbox, SmtpTransport(settings, None)
    finally:
        controller.stop()


@pytest.fixture
def hooks(secrets: tuple[str, str], tmp_path: Path) -> Iterator[WebhookTransport]:  # noqa: F811
    with WebhookTransport(channels(*secrets), tmp_path, timeout_seconds=5) as transport:
        yield transport


def queue(sessions: sessionmaker[Session], key: str, channel: str, recipient: str = "") -> int:
    default = {"mail": "yamada@example.jp", "teams": "desk-teams", "webhook": "desk-hook"}
    with transaction(sessions) as session:
        return enqueue(
            session,
            dedupe_key=key,
            kind="desk_notice",
            channel=channel,
            recipient=recipient or default[channel],
            subject="【P1】株式会社アクメ: 不審な PowerShell",
            body_text="端末: ACME-PC01\n対応をお願いします。\n",
        ).id


def row(sessions: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with sessions() as session:
        return session.get_one(OutboxMessage, message_id)


def deliver(
    sessions: sessionmaker[Session],
    mail: Any,
    hooks: WebhookTransport | None,
    now: datetime,
    max_attempts: int = 5,
) -> DeliveryStats:
    return deliver_due(
        sessions,
        mail,
        sender=SENDER,
        sender_name="EDR体験 運営事務局",
        max_attempts=max_attempts,
        now=now,
        rng=random.Random(1),
        channels=hooks,
    )


class NoMail:
    def send(self, message: EmailMessage) -> None:
        raise AssertionError("no mail expected")


def test_enqueue_validates_the_channel_and_keeps_dedupe(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="channel must be one of"):
        enqueue(
            session,
            dedupe_key="k",
            kind="x",
            recipient="desk",
            subject="s",
            body_text="t",
            channel="sms",
        )
    first = queue(sessions, "notice:1:desk", "teams")
    again = queue(sessions, "notice:1:desk", "webhook")
    assert again == first
    stored = row(sessions, first)
    assert (stored.channel, stored.recipient, stored.status) == ("teams", "desk-teams", "pending")
    assert row(sessions, queue(sessions, "notice:1:company", "mail")).channel == "mail"


def test_each_channel_delivers_once(
    sessions: sessionmaker[Session],
    smtp: tuple[Inbox, SmtpTransport],
    hooks: WebhookTransport,
    receiver: Receiver,  # noqa: F811
) -> None:
    inbox, mail = smtp
    ids = [queue(sessions, f"k-{c}", c) for c in ("mail", "teams", "webhook")]
    now = utcnow()

    assert deliver(sessions, mail, hooks, now) == DeliveryStats(sent=3)
    assert deliver(sessions, mail, hooks, now + timedelta(hours=1)) == DeliveryStats()

    assert [m["Message-ID"] for m in inbox.messages] == [
        f"<edrtrial-outbox-{ids[0]}@edr-trial.example.jp>"
    ]
    assert sorted(h.path for h in receiver.hits) == sorted(["/" + TEAMS_TOKEN, "/" + HOOK_TOKEN])
    teams = next(h for h in receiver.hits if h.path == "/" + TEAMS_TOKEN).json()
    assert block_text(teams["attachments"][0]["content"]["body"][0]).startswith("【P1】")
    hook = next(h for h in receiver.hits if h.path == "/" + HOOK_TOKEN)
    assert hook.json()["id"] == unquote(hook.headers["idempotency-key"]) == "k-webhook"
    for message_id in ids:
        stored = row(sessions, message_id)
        assert (stored.status, stored.attempts, stored.sent_at) == ("sent", 0, now)


def test_server_error_is_retried_and_sent_exactly_once(
    sessions: sessionmaker[Session],
    hooks: WebhookTransport,
    receiver: Receiver,  # noqa: F811
    secrets: tuple[str, str],  # noqa: F811
) -> None:
    receiver.replies.append((500, "Internal Server Error"))
    message_id = queue(sessions, "k1", "teams")
    now = utcnow()

    assert deliver(sessions, NoMail(), hooks, now) == DeliveryStats(retried=1)
    stored = row(sessions, message_id)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert stored.last_error == (
        "ServerUnavailableError: teams channel 'desk-teams': 500 Internal Server Error"
    )
    assert now + timedelta(seconds=30) <= stored.next_attempt_at <= now + timedelta(minutes=1)

    assert deliver(sessions, NoMail(), hooks, now + timedelta(seconds=10)) == DeliveryStats()
    assert deliver(sessions, NoMail(), hooks, now + timedelta(minutes=2)) == DeliveryStats(sent=1)
    assert deliver(sessions, NoMail(), hooks, now + timedelta(hours=9)) == DeliveryStats()
    assert len(receiver.hits) == 2  # the refused one, then the accepted one
    stored = row(sessions, message_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("sent", 1, "")


def test_refused_message_fails_at_once_with_the_answer(
    sessions: sessionmaker[Session],
    hooks: WebhookTransport,
    receiver: Receiver,  # noqa: F811
    secrets: tuple[str, str],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.replies.append((400, "Bad payload received by generic incoming webhook."))
    bad = queue(sessions, "bad", "webhook")
    good = queue(sessions, "good", "teams")
    now = utcnow()

    assert deliver(sessions, NoMail(), hooks, now) == DeliveryStats(sent=1, failed=1)
    assert deliver(sessions, NoMail(), hooks, now + timedelta(days=1)) == DeliveryStats()
    stored = row(sessions, bad)
    assert (stored.status, stored.attempts, stored.sent_at) == ("failed", 1, None)
    assert stored.last_error == (
        "UndeliverableError: webhook channel 'desk-hook': refused: "
        "400 Bad payload received by generic incoming webhook."
    )
    assert row(sessions, good).status == "sent"
    assert leaked(stored.last_error + caplog.text, secrets) == []
    assert SIGNING_SECRET not in caplog.text


def test_channel_down_schedules_a_retry_and_the_rest_still_go(
    sessions: sessionmaker[Session],
    smtp: tuple[Inbox, SmtpTransport],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    inbox, mail = smtp
    port = closed_port()
    down = (f"http://127.0.0.1:{port}/{TEAMS_TOKEN}", f"http://127.0.0.1:{port}/{HOOK_TOKEN}")
    monkeypatch.setenv("EDRTRIAL_TEST_TEAMS_URL", down[0])
    monkeypatch.setenv("EDRTRIAL_TEST_HOOK_URL", down[1])
    monkeypatch.setenv("EDRTRIAL_TEST_HOOK_SECRET", SIGNING_SECRET)
    teams = [queue(sessions, f"t{i}", "teams") for i in range(3)]
    letter = queue(sessions, "m", "mail")
    now = utcnow()

    with WebhookTransport(channels(*down), tmp_path, timeout_seconds=5) as hooks:
        stats = deliver(sessions, mail, hooks, now)
    assert stats == DeliveryStats(sent=1, retried=1, postponed=2)
    first, *rest = (row(sessions, i) for i in teams)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error.startswith("ServerUnavailableError: teams channel 'desk-teams': cannot")
    assert first.next_attempt_at > now
    assert [(r.status, r.attempts, r.last_error) for r in rest] == [("pending", 0, "")] * 2
    assert row(sessions, letter).status == "sent" and len(inbox.messages) == 1
    assert leaked(first.last_error + caplog.text, down) == []


def test_unknown_channel_fails_clearly_and_stays(
    sessions: sessionmaker[Session],
    hooks: WebhookTransport,
    receiver: Receiver,  # noqa: F811
) -> None:
    gone = queue(sessions, "gone", "teams", recipient="night-shift")
    assert deliver(sessions, NoMail(), hooks, utcnow()) == DeliveryStats(failed=1)
    stored = row(sessions, gone)
    assert (stored.status, stored.attempts) == ("failed", 1)
    assert "channel 'night-shift' is not configured" in stored.last_error
    assert "desk-hook, desk-mail, desk-teams" in stored.last_error
    assert receiver.hits == []


def test_without_a_channel_transport_messages_wait_untouched(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, mail = smtp
    waiting = queue(sessions, "t", "teams")
    queue(sessions, "m", "mail")
    assert deliver(sessions, mail, None, utcnow()) == DeliveryStats(sent=1, postponed=1)
    stored = row(sessions, waiting)
    assert (stored.status, stored.attempts, stored.last_error) == ("pending", 0, "")


def test_crash_after_posting_resends_with_the_same_idempotency_key(
    sessions: sessionmaker[Session],
    hooks: WebhookTransport,
    receiver: Receiver,  # noqa: F811
) -> None:
    class CrashAfterSend:
        def send(self, msg: OutboxMessage) -> None:
            hooks.send(msg)
            raise RuntimeError("process killed before the commit")

    message_id = queue(sessions, "notice:ticket:9:desk", "webhook")
    now = utcnow()
    with pytest.raises(RuntimeError):
        deliver_due(
            sessions,
            NoMail(),
            sender=SENDER,
            sender_name="x",
            max_attempts=3,
            now=now,
            channels=CrashAfterSend(),
        )
    assert row(sessions, message_id).status == "pending"

    assert deliver(sessions, NoMail(), hooks, now) == DeliveryStats(sent=1)
    assert [h.headers["idempotency-key"] for h in receiver.hits] == [
        "notice%3Aticket%3A9%3Adesk"
    ] * 2


def test_deliver_outbox_job_uses_the_configured_channels(
    sessions: sessionmaker[Session],
    engine: Engine,
    receiver: Receiver,  # noqa: F811
    secrets: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = AppSettings.model_validate(
        {
            "mail": {"from_address": SENDER, "outbox_dir": str(tmp_path / "mail")},
            "desk": {
                "name": "desk",
                "email": "desk@example.jp",
                "channels": [
                    {"name": "desk-teams", "kind": "teams", "url": "env:EDRTRIAL_TEST_TEAMS_URL"},
                    {
                        "name": "desk-hook",
                        "kind": "webhook",
                        "url": "env:EDRTRIAL_TEST_HOOK_URL",
                        "signing_secret": "env:EDRTRIAL_TEST_HOOK_SECRET",
                    },
                ],
            },
        }
    )
    runtime = Runtime(Config(settings, tmp_path / "config.toml"), engine, playbook=None)  # type: ignore[arg-type]
    ids = [queue(sessions, f"k-{c}", c) for c in ("mail", "teams", "webhook")]

    assert jobs.deliver_outbox(runtime) == DeliveryStats(sent=3)
    assert [row(sessions, i).status for i in ids] == ["sent"] * 3
    assert len(receiver.hits) == 2
    assert [p.suffix for p in (tmp_path / "mail").iterdir()] == [".eml"]
