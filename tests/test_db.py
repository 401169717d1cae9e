"""Claims: of two processes racing for one row, exactly one wins."""

from __future__ import annotations

from edrtrial.db import claim, transaction
from edrtrial.models import OutboxMessage


def test_a_row_can_be_claimed_once(sessions):
    with transaction(sessions) as session:
        msg = OutboxMessage(
            dedupe_key="k", kind="desk-notice", recipient="d@example.jp", subject="s", body_text="b"
        )
        session.add(msg)
        session.flush()
        message_id = msg.id
    with transaction(sessions) as first:
        assert claim(first, OutboxMessage, message_id, "status", "pending", status="sending")
    with transaction(sessions) as second:
        assert not claim(second, OutboxMessage, message_id, "status", "pending", status="sending")
    with sessions() as session:
        assert session.get_one(OutboxMessage, message_id).status == "sending"
