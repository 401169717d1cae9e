"""The persistent outbox: each notice is queued once and delivered at least once.

A message travels by mail (`recipient` is an address) or through a configured Teams or
webhook channel (`recipient` is the channel's name; its URL stays in the config). Its
status moves only by the steps of `notify/states.py`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import transaction
from edrtrial.errors import DeliveryError, ServerUnavailableError, UndeliverableError
from edrtrial.models import OutboxMessage
from edrtrial.notify.mail import MailTransport, build_message
from edrtrial.notify.states import OUTBOX
from edrtrial.states import OutboxState
from edrtrial.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=1)
RETRY_FACTOR = 3
RETRY_CAP = timedelta(hours=4)
ERROR_MAX_CHARS = 1000
_DEDUPE_MAX = 200  # the column widths, checked here so SQLite fails like PostgreSQL would
_KIND_MAX = 32
CHANNELS = ("mail", "teams", "webhook")

_rng = random.Random()


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one delivery run did."""

    sent: int = 0
    retried: int = 0  # failed this time, scheduled again
    failed: int = 0  # given up (max attempts, or refused for good)
    postponed: int = 0  # due but not tried: its server or channel was unavailable


class ChannelSender(Protocol):
    """Delivers a Teams or webhook message to the channel named in its `recipient`."""

    def send(self, msg: OutboxMessage) -> None:
        """Deliver one message or raise `DeliveryError` (a subclass saying why)."""
        ...


class _Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SERVER_DOWN = "server_down"


def enqueue(
    session: Session,
    *,
    dedupe_key: str,
    kind: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    tenant_id: int | None = None,
    channel: str = "mail",
    report_id: int | None = None,
) -> OutboxMessage:
    """Queue a message unless one with this dedupe key exists (then return it, unchanged).

    For `channel` "teams" or "webhook", `recipient` is the name of a configured channel.
    `report_id` names the archived report a mail attaches (`notify.archive`).
    """
    if not dedupe_key or len(dedupe_key) > _DEDUPE_MAX:
        raise ValueError(f"dedupe_key must be 1..{_DEDUPE_MAX} characters: {dedupe_key!r}")
    if not kind or len(kind) > _KIND_MAX:
        raise ValueError(f"kind must be 1..{_KIND_MAX} characters: {kind!r}")
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}: {channel!r}")
    if not recipient.strip():
        raise ValueError(f"outbox message {dedupe_key!r} has no recipient")
    existing = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    message = OutboxMessage(
        dedupe_key=dedupe_key,
        kind=kind,
        channel=channel,
        recipient=recipient.strip(),
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        tenant_id=tenant_id,
        report_id=report_id,
        status=OutboxState.PENDING,
        attempts=0,
        last_error="",
        next_attempt_at=utcnow(),
    )
    session.add(message)
    session.flush()
    return message


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Wait after the n-th failure: 1, 3, 9 … minutes up to 4 h, jittered down to half."""
    exponent = min(max(attempts, 1) - 1, 16)
    growth: int = RETRY_FACTOR**exponent
    nominal = min(RETRY_BASE * growth, RETRY_CAP)
    # Jitter spreads retries of many messages that failed together (e.g. a relay outage).
    factor: float = 0.5 + 0.5 * (rng or _rng).random()
    return nominal * factor


def due_message_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Pending messages whose time has come, oldest first."""
    query = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxState.PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _due(session: Session, now: datetime, limit: int) -> list[tuple[int, str, str]]:
    """Like `due_message_ids`, with each message's channel and recipient for routing."""
    query = (
        select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.recipient)
        .where(OutboxMessage.status == OutboxState.PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    return [(row.id, row.channel, row.recipient) for row in session.execute(query)]


def _route(channel: str, recipient: str) -> str:
    """What fails together: all mail shares one server, each other channel is its own."""
    return "mail" if channel == "mail" else f"{channel}:{recipient}"


def _describe(msg: OutboxMessage) -> str:
    if msg.channel == "mail":
        return f"mail {msg.id} to {msg.recipient}"
    return f"{msg.channel} message {msg.id} to channel {msg.recipient!r}"


def _record_failure(
    session: Session,
    msg: OutboxMessage,
    err: DeliveryError,
    *,
    now: datetime,
    max_attempts: int,
    rng: random.Random | None,
) -> _Outcome:
    attempts = msg.attempts + 1
    error = f"{type(err).__name__}: {err}"[:ERROR_MAX_CHARS]
    extra = {"tenant_id": msg.tenant_id, "outbox_id": msg.id}
    if isinstance(err, UndeliverableError) or attempts >= max_attempts:
        OUTBOX.move(session, msg, "give_up", attempts=attempts, last_error=error)
        log.error(
            "%s given up after %d attempt(s): %s", _describe(msg), attempts, error, extra=extra
        )
        return _Outcome.FAILED
    retry_at = now + retry_delay(attempts, rng)
    OUTBOX.move(
        session, msg, "retry", attempts=attempts, last_error=error, next_attempt_at=retry_at
    )
    log.warning(
        "%s failed (attempt %d of %d), retry at %s: %s",
        _describe(msg),
        attempts,
        max_attempts,
        retry_at.isoformat(),
        error,
        extra=extra,
    )
    return _Outcome.SERVER_DOWN if isinstance(err, ServerUnavailableError) else _Outcome.RETRY


def _send(
    msg: OutboxMessage,
    transport: MailTransport,
    channels: ChannelSender | None,
    *,
    sender: str,
    sender_name: str,
) -> None:
    if msg.channel == "mail":
        transport.send(build_message(msg, sender=sender, sender_name=sender_name))
    elif msg.channel in CHANNELS and channels is not None:
        channels.send(msg)
    else:  # written by hand or by a newer version; `deliver_due` keeps the others back
        raise UndeliverableError(f"outbox message {msg.id} has unknown channel {msg.channel!r}")


def _deliver_one(
    session: Session,
    msg: OutboxMessage,
    transport: MailTransport,
    channels: ChannelSender | None,
    *,
    sender: str,
    sender_name: str,
    max_attempts: int,
    now: datetime | None,
    rng: random.Random | None,
) -> _Outcome:
    clock = now or utcnow()
    try:
        _send(msg, transport, channels, sender=sender, sender_name=sender_name)
    except DeliveryError as err:
        return _record_failure(session, msg, err, now=clock, max_attempts=max_attempts, rng=rng)
    OUTBOX.move(session, msg, "sent", sent_at=now or utcnow(), last_error="")
    log.info(
        "%s (%s) sent",
        _describe(msg),
        msg.kind,
        extra={"tenant_id": msg.tenant_id, "outbox_id": msg.id},
    )
    return _Outcome.SENT


def deliver_due(
    sessions: sessionmaker[Session],
    transport: MailTransport,
    *,
    sender: str,
    sender_name: str,
    max_attempts: int,
    now: datetime | None = None,
    limit: int = 200,
    rng: random.Random | None = None,
    channels: ChannelSender | None = None,
) -> DeliveryStats:
    """Send what is due, one transaction per message; a crash after sending re-sends (same ID).

    Mail goes through `transport`, Teams and webhook messages through `channels`; without
    `channels` those wait, untouched. When a server or channel is unavailable, its other
    messages wait for the next run while the rest still go.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    at = as_utc(now) if now is not None else None
    with transaction(sessions) as session:
        due = _due(session, at or utcnow(), limit)
    counts = {outcome: 0 for outcome in _Outcome}
    postponed = 0
    unavailable: set[str] = set()
    held_back = 0
    for message_id, channel, recipient in due:
        route = _route(channel, recipient)
        if channel != "mail" and channel in CHANNELS and channels is None:
            held_back += 1
            continue
        if route in unavailable:
            # It would wait out the same timeout or refusal; leave it for the next run.
            postponed += 1
            continue
        with transaction(sessions) as session:
            # Take it first: a second deliverer (the CLI beside `serve`) waits here, then skips.
            if not OUTBOX.move_id(session, message_id, OutboxState.PENDING, "take"):
                continue  # sent or given up meanwhile
            msg = session.get_one(OutboxMessage, message_id)
            outcome = _deliver_one(
                session,
                msg,
                transport,
                channels,
                sender=sender,
                sender_name=sender_name,
                max_attempts=max_attempts,
                now=at,
                rng=rng,
            )
        counts[outcome] += 1
        if outcome is _Outcome.SERVER_DOWN:
            unavailable.add(route)
    if held_back:
        log.warning("%d Teams/webhook message(s) due but no channel transport given", held_back)
    return DeliveryStats(
        sent=counts[_Outcome.SENT],
        retried=counts[_Outcome.RETRY] + counts[_Outcome.SERVER_DOWN],
        failed=counts[_Outcome.FAILED],
        postponed=postponed + held_back,
    )
