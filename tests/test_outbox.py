"""The outbox against a real local SMTP server: once queued, delivered at least once, retried."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import SmtpConfig
from edrtrial.db import transaction
from edrtrial.models import OutboxMessage
from edrtrial.notify.mail import SmtpTransport
from edrtrial.notify.outbox import (
    RETRY_CAP,
    DeliveryStats,
    deliver_due,
    enqueue,
    retry_delay,
)
from edrtrial.timeutil import utcnow

SENDER = "noreply@edr-trial.example.jp"
SENDER_NAME = "EDR体験 運営事務局"
SUBJECT = "【EDR体験】検知レポート（2026/11/01〜2026/11/07）株式会社アクメ"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it accepts and answers DATA as told."""

    reply: str = "250 OK"
    refuse: set[str] = field(default_factory=set)
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            parsed = BytesParser(policy=policy.default).parsebytes(envelope.content)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
        return self.reply


def start_server(inbox: Inbox, port: int) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, SmtpTransport]]:
    inbox = Inbox()
    controller = start_server(inbox, free_port())
    settings = SmtpConfig(host="127.0.0.1", port=controller.port, starttls=False, timeout_seconds=5)
    try:
        yield inbox, SmtpTransport(settings, None)
    finally:
        controller.stop()


def queue(
    sessions: sessionmaker[Session],
    key: str,
    *,
    recipient: str = "yamada@example.jp",
    html: str | None = "<p>検知レポート</p>",
) -> int:
    with transaction(sessions) as session:
        return enqueue(
            session,
            dedupe_key=key,
            kind="detection_report",
            recipient=recipient,
            subject=SUBJECT,
            body_text="検知レポート\n",
            body_html=html,
        ).id


def row(sessions: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with sessions() as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        return found


def deliver(
    sessions: sessionmaker[Session], transport: Any, now: datetime, max_attempts: int = 5
) -> DeliveryStats:
    return deliver_due(
        sessions,
        transport,
        sender=SENDER,
        sender_name=SENDER_NAME,
        max_attempts=max_attempts,
        now=now,
        rng=random.Random(1),
    )


def test_enqueue_is_idempotent(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        first = enqueue(
            session,
            dedupe_key="notice:ticket:1:company",
            kind="company_notice",
            recipient="a@example.jp",
            subject="一回目",
            body_text="本文",
        )
    with transaction(sessions) as session:
        second = enqueue(
            session,
            dedupe_key="notice:ticket:1:company",
            kind="company_notice",
            recipient="b@example.jp",
            subject="二回目",
            body_text="別の本文",
        )
        assert second.id == first.id
        assert (second.subject, second.recipient) == ("一回目", "a@example.jp")
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        assert (second.status, second.attempts) == ("pending", 0)


def test_enqueue_does_not_commit(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        enqueue(
            session, dedupe_key="k", kind="x", recipient="a@example.jp", subject="s", body_text="t"
        )
        session.rollback()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(
    ("key", "kind", "recipient"),
    [
        ("", "x", "a@example.jp"),
        ("k" * 201, "x", "a@example.jp"),
        ("k", "", "a@example.jp"),
        ("k", "x" * 33, "a@example.jp"),
        ("k", "x", "  "),
    ],
)
def test_enqueue_rejects_what_the_store_cannot_hold(
    sessions: sessionmaker[Session], key: str, kind: str, recipient: str
) -> None:
    with sessions() as session, pytest.raises(ValueError):
        enqueue(session, dedupe_key=key, kind=kind, recipient=recipient, subject="s", body_text="t")


def test_delivers_each_message_once_through_smtp(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, transport = smtp
    report = queue(sessions, "report:detection:acme:2026-11-01:2026-11-07")
    notice = queue(sessions, "notice:ticket:7:company", recipient="sato@example.jp", html=None)
    now = utcnow()

    assert deliver(sessions, transport, now) == DeliveryStats(sent=2)
    assert deliver(sessions, transport, now + timedelta(hours=1)) == DeliveryStats()

    assert len(inbox.messages) == 2
    by_id = {m["Message-ID"]: m for m in inbox.messages}
    mail = by_id[f"<edrtrial-outbox-{report}@edr-trial.example.jp>"]
    assert mail["Subject"] == SUBJECT
    assert mail["From"].addresses[0].display_name == SENDER_NAME
    html = mail.get_body(("html",))
    assert html is not None and html.get_content() == "<p>検知レポート</p>\n"
    plain_only = by_id[f"<edrtrial-outbox-{notice}@edr-trial.example.jp>"]
    assert plain_only.get_content_type() == "text/plain" and plain_only["To"] == "sato@example.jp"
    for message_id in (report, notice):
        stored = row(sessions, message_id)
        assert (stored.status, stored.sent_at, stored.attempts) == ("sent", now, 0)


def test_temporary_refusal_is_retried_with_backoff(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, transport = smtp
    inbox.reply = "451 4.3.0 Mail server temporarily rejected message"
    message_id = queue(sessions, "k1")
    now = utcnow()

    assert deliver(sessions, transport, now) == DeliveryStats(retried=1)
    stored = row(sessions, message_id)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert "451" in stored.last_error and "temporarily rejected" in stored.last_error
    assert now + timedelta(seconds=30) <= stored.next_attempt_at <= now + timedelta(minutes=1)

    inbox.reply = "250 OK"
    assert deliver(sessions, transport, now + timedelta(seconds=20)) == DeliveryStats()
    assert deliver(sessions, transport, now + timedelta(minutes=2)) == DeliveryStats(sent=1)
    assert len(inbox.messages) == 1
    stored = row(sessions, message_id)
    assert (stored.status, stored.last_error) == ("sent", "")


def test_server_down_postpones_the_rest_then_sends_all(sessions: sessionmaker[Session]) -> None:
    port = free_port()  # nothing listens here yet
    transport = SmtpTransport(
        SmtpConfig(host="127.0.0.1", port=port, starttls=False, timeout_seconds=5), None
    )
    ids = [queue(sessions, f"k{i}") for i in range(3)]
    now = utcnow()

    assert deliver(sessions, transport, now) == DeliveryStats(retried=1, postponed=2)
    first, *rest = (row(sessions, i) for i in ids)
    assert first.attempts == 1 and "cannot connect" in first.last_error
    assert [(r.attempts, r.last_error) for r in rest] == [(0, ""), (0, "")]

    inbox = Inbox()
    controller = start_server(inbox, port)
    try:
        assert deliver(sessions, transport, now + timedelta(hours=1)) == DeliveryStats(sent=3)
    finally:
        controller.stop()
    assert sorted(m["Message-ID"] for m in inbox.messages) == sorted(
        f"<edrtrial-outbox-{i}@edr-trial.example.jp>" for i in ids
    )


def test_gives_up_after_max_attempts(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, transport = smtp
    inbox.reply = "451 4.3.0 try later"
    message_id = queue(sessions, "k1")
    now = utcnow()
    assert deliver(sessions, transport, now, max_attempts=2) == DeliveryStats(retried=1)
    later = now + timedelta(hours=1)
    assert deliver(sessions, transport, later, max_attempts=2) == DeliveryStats(failed=1)
    assert (
        deliver(sessions, transport, later + timedelta(days=1), max_attempts=2) == DeliveryStats()
    )
    stored = row(sessions, message_id)
    assert (stored.status, stored.attempts, stored.sent_at) == ("failed", 2, None)


def test_unknown_recipient_fails_at_once(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, transport = smtp
    inbox.refuse.add("nobody@example.jp")
    bad = queue(sessions, "bad", recipient="nobody@example.jp")
    good = queue(sessions, "good")
    assert deliver(sessions, transport, utcnow()) == DeliveryStats(sent=1, failed=1)
    stored = row(sessions, bad)
    assert (stored.status, stored.attempts) == ("failed", 1)
    assert "550" in stored.last_error and "nobody@example.jp" in stored.last_error
    assert row(sessions, good).status == "sent"


def test_crash_after_sending_resends_with_the_same_message_id(
    sessions: sessionmaker[Session], smtp: tuple[Inbox, SmtpTransport]
) -> None:
    inbox, transport = smtp

    class CrashAfterSend:
        def send(self, message: EmailMessage) -> None:
            transport.send(message)
            raise RuntimeError("process killed before the commit")

    message_id = queue(sessions, "k1")
    now = utcnow()
    with pytest.raises(RuntimeError):
        deliver(sessions, CrashAfterSend(), now)
    assert row(sessions, message_id).status == "pending"

    assert deliver(sessions, transport, now) == DeliveryStats(sent=1)
    assert [m["Message-ID"] for m in inbox.messages] == [
        f"<edrtrial-outbox-{message_id}@edr-trial.example.jp>"
    ] * 2


def test_retry_delay_grows_and_is_jittered() -> None:
    rng = random.Random(7)
    nominal = [
        timedelta(minutes=1),
        timedelta(minutes=3),
        timedelta(minutes=9),
        timedelta(minutes=27),
        timedelta(minutes=81),
        RETRY_CAP,
        RETRY_CAP,
    ]
    for attempts, upper in enumerate(nominal, start=1):
        delays = {retry_delay(attempts, rng) for _ in range(20)}
        assert all(upper / 2 <= d <= upper for d in delays), attempts
        assert len(delays) > 1, "jitter spreads retries"
