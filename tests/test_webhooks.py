"""Teams and signed-webhook delivery against a real local HTTP server (no mocked client)."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from edrtrial.config import ChannelConfig
from edrtrial.errors import DeliveryError, ServerUnavailableError, UndeliverableError
from edrtrial.models import OutboxMessage
from edrtrial.notify.webhooks import (
    ADAPTIVE_CARD,
    WebhookTransport,
    verify_signature,
)

TEAMS_TOKEN = "IncomingWebhook/0f1e2d3c4b5a69788796a5b4c3d2e1f0/sig-Zx9Qw8Er7Ty6"
HOOK_TOKEN = "hooks/desk/tok-8c1f4e2a9b7d"
SIGNING_SECRET = "whsec-4f9a1c7e2b8d6053-very-secret"
TEXT = "株式会社アクメ の端末で検知がありました。\n端末: ACME-PC01\n\n対応をお願いします。\n"
NOW = 1_795_000_000.0  # a fixed clock for the signature timestamp


@dataclass
class Hit:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Receiver:
    """A local HTTP server that records each request and answers from a script."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    replies: list[tuple[int, str]] = field(default_factory=list)  # then 200 "1" for ever

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def next_reply(self) -> tuple[int, str]:
        return self.replies.pop(0) if self.replies else (200, "1")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.hits.append(
                Hit("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, text = receiver.next_reply()
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def channels(teams_url: str, hook_url: str) -> list[ChannelConfig]:
    """A Teams and a webhook channel whose URLs and secret come from the environment."""
    return [
        ChannelConfig(name="desk-mail", kind="mail", to="desk@example.jp"),
        ChannelConfig(name="desk-teams", kind="teams", url="env:EDRTRIAL_TEST_TEAMS_URL"),
        ChannelConfig(
            name="desk-hook",
            kind="webhook",
            url="env:EDRTRIAL_TEST_HOOK_URL",
            signing_secret="env:EDRTRIAL_TEST_HOOK_SECRET",
        ),
    ]


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> tuple[str, str]:
    """Points both channels at the receiver; returns (teams URL, webhook URL)."""
    teams, hook = receiver.url(TEAMS_TOKEN), receiver.url(HOOK_TOKEN)
    monkeypatch.setenv("EDRTRIAL_TEST_TEAMS_URL", teams)
    monkeypatch.setenv("EDRTRIAL_TEST_HOOK_URL", hook)
    monkeypatch.setenv("EDRTRIAL_TEST_HOOK_SECRET", SIGNING_SECRET)
    return teams, hook


@pytest.fixture
def transport(secrets: tuple[str, str], tmp_path: Path) -> Iterator[WebhookTransport]:
    with WebhookTransport(channels(*secrets), tmp_path, clock=lambda: NOW) as t:
        yield t


def message(channel: str = "teams", **fields: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "id": 41,
        "dedupe_key": "notice:ticket:7:desk:P1",
        "kind": "desk_notice",
        "channel": channel,
        "recipient": "desk-teams" if channel == "teams" else "desk-hook",
        "subject": "【P1】株式会社アクメ: Suspicious\nPowerShell  command",
        "body_text": TEXT,
        "tenant_id": 3,
        "created_at": datetime(2026, 11, 9, 0, 5, 7, tzinfo=UTC),
    }
    values.update(fields)
    return OutboxMessage(**values)


def block_text(block: dict[str, Any]) -> str:
    """The text a card block shows: a TextBlock's text, or a RichTextBlock's runs."""
    if block["type"] == "TextBlock":
        return str(block["text"])
    return "".join(str(run["text"]) for run in block["inlines"])


def leaked(text: str, urls: tuple[str, str]) -> list[str]:
    """Which of the credentials appear in text (the URLs, their tokens, the secret)."""
    return [s for s in (*urls, TEAMS_TOKEN, HOOK_TOKEN, SIGNING_SECRET) if s in text]


def test_teams_message_is_an_adaptive_card(transport: WebhookTransport, receiver: Receiver) -> None:
    transport.send(message())

    [hit] = receiver.hits
    assert hit.path == "/" + TEAMS_TOKEN
    assert hit.headers["content-type"].startswith("application/json")
    payload = hit.json()
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == ADAPTIVE_CARD == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.2")
    title, *lines = card["body"]
    assert title == {
        "type": "RichTextBlock",
        "inlines": [
            {
                "type": "TextRun",
                "text": "【P1】株式会社アクメ: Suspicious PowerShell command",
                "weight": "Bolder",
                "size": "Medium",
            }
        ],
    }
    assert [block_text(b) for b in lines] == [
        "株式会社アクメ の端末で検知がありました。",
        "端末: ACME-PC01",
        "対応をお願いします。",
    ]
    assert all(b["type"] == "RichTextBlock" for b in lines), "plain text, never markdown"
    assert lines[2]["spacing"] == "Medium", "a blank line separates paragraphs"
    assert "x-edrtrial-signature" not in hit.headers


HOSTILE_TITLE = "[Open the report](http://evil.example/x) **urgent** _now_"
HOSTILE_LINES = (
    "- 1. not a list",
    "端末: <!channel> <http://evil.example|ACME-PC01> & <b>x</b>",
)


def test_teams_card_shows_alert_markdown_as_text_and_never_as_a_link(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    transport.send(message(subject=HOSTILE_TITLE, body_text="\n".join(HOSTILE_LINES)))

    card = receiver.hits[0].json()["attachments"][0]["content"]
    # Teams renders a TextBlock's text as markdown; a TextRun's text is shown as it is.
    assert [b["type"] for b in card["body"]] == ["RichTextBlock"] * 3
    assert [block_text(b) for b in card["body"]] == [HOSTILE_TITLE, *HOSTILE_LINES]
    assert all(run["type"] == "TextRun" for b in card["body"] for run in b["inlines"])
    assert '"type":"TextBlock"' not in receiver.hits[0].body.decode()


def test_webhook_text_cannot_mention_a_channel_or_hide_a_link(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    hostile = "\n".join(HOSTILE_LINES)
    transport.send(message("webhook", subject=HOSTILE_TITLE + " <!here>", body_text=hostile))

    sent = receiver.hits[0].json()
    assert sent["text"] == (
        "- 1. not a list\n"
        "端末: &lt;!channel&gt; &lt;http://evil.example|ACME-PC01&gt; &amp; &lt;b&gt;x&lt;/b&gt;"
    )
    assert "<" not in sent["subject"] + sent["text"]
    # The receiver gets the exact text back by unescaping the three characters.
    assert html.unescape(sent["text"]) == hostile
    assert html.unescape(sent["subject"]) == HOSTILE_TITLE + " <!here>"


def test_teams_workflows_answer_202_is_sent(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    receiver.replies.append((202, ""))
    transport.send(message())
    assert len(receiver.hits) == 1


def test_long_teams_text_is_cut_to_fit_a_message(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    transport.send(message(body_text="あ" * 50_000))
    assert len(receiver.hits[0].body) < 28_000
    last = receiver.hits[0].json()["attachments"][0]["content"]["body"][-1]
    assert block_text(last).endswith("…")


def test_webhook_is_signed_and_verifiable(transport: WebhookTransport, receiver: Receiver) -> None:
    transport.send(message("webhook", dedupe_key="notice:ticket:7:desk:東京"))

    [hit] = receiver.hits
    assert hit.path == "/" + HOOK_TOKEN
    assert hit.json() == {
        "id": "notice:ticket:7:desk:東京",
        "kind": "desk_notice",
        "subject": "【P1】株式会社アクメ: Suspicious␊PowerShell  command",
        "text": TEXT,
        "tenant_id": 3,
        "created_at": "2026-11-09T00:05:07Z",
    }
    stamp = hit.headers["x-edrtrial-timestamp"]
    assert stamp == str(int(NOW))
    # The receiver's side, written out: HMAC-SHA256 of "<timestamp>.<raw body>".
    expected = hmac.new(
        SIGNING_SECRET.encode(), stamp.encode() + b"." + hit.body, hashlib.sha256
    ).hexdigest()
    assert hit.headers["x-edrtrial-signature"] == f"sha256={expected}"
    wrong = hmac.new(b"another-secret", stamp.encode() + b"." + hit.body, hashlib.sha256)
    assert not hmac.compare_digest(
        hit.headers["x-edrtrial-signature"], f"sha256={wrong.hexdigest()}"
    )
    assert unquote(hit.headers["idempotency-key"]) == "notice:ticket:7:desk:東京"

    signature = hit.headers["x-edrtrial-signature"]
    assert verify_signature(SIGNING_SECRET, stamp, hit.body, signature, now=NOW + 60)
    assert not verify_signature("another-secret", stamp, hit.body, signature, now=NOW)
    assert not verify_signature(SIGNING_SECRET, stamp, hit.body + b" ", signature, now=NOW)
    assert not verify_signature(SIGNING_SECRET, stamp, hit.body, signature, now=NOW + 600)


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (500, "Internal Server Error", ServerUnavailableError),
        (503, "busy", ServerUnavailableError),
        (429, "Too Many Requests", ServerUnavailableError),
        (408, "Request Timeout", DeliveryError),
        (
            200,
            "Microsoft Teams endpoint returned HTTP error 429 with ContextId x",
            ServerUnavailableError,
        ),
        (301, "", ServerUnavailableError),
        (400, "Bad payload received by generic incoming webhook.", UndeliverableError),
        (404, "Webhook not found", UndeliverableError),
    ],
)
def test_answers_map_onto_delivery_errors(
    transport: WebhookTransport,
    receiver: Receiver,
    secrets: tuple[str, str],
    status: int,
    text: str,
    error: type[DeliveryError],
) -> None:
    for channel in ("teams", "webhook"):
        receiver.replies.append((status, text))
        with pytest.raises(DeliveryError) as caught:
            transport.send(message(channel))
        assert type(caught.value) is error
        assert str(status) in str(caught.value)
        if text and status != 301:
            assert text in str(caught.value)
        assert leaked(str(caught.value), secrets) == []


def test_refusal_names_the_channel_not_the_url(
    transport: WebhookTransport, receiver: Receiver, secrets: tuple[str, str]
) -> None:
    receiver.replies.append((400, f"cannot post to {secrets[0]}"))  # a receiver echoing the URL
    with pytest.raises(
        UndeliverableError, match="teams channel 'desk-teams': refused: 400"
    ) as caught:
        transport.send(message())
    assert leaked(str(caught.value), secrets) == []


def test_server_down_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secrets: tuple[str, str]
) -> None:
    port = closed_port()
    down = (f"http://127.0.0.1:{port}/{TEAMS_TOKEN}", f"http://127.0.0.1:{port}/{HOOK_TOKEN}")
    monkeypatch.setenv("EDRTRIAL_TEST_TEAMS_URL", down[0])
    monkeypatch.setenv("EDRTRIAL_TEST_HOOK_URL", down[1])
    with WebhookTransport(channels(*down), tmp_path, timeout_seconds=5) as transport:
        for channel in ("teams", "webhook"):
            with pytest.raises(ServerUnavailableError, match="cannot connect") as caught:
                transport.send(message(channel))
            assert leaked(str(caught.value), down) == []


def test_unknown_channel_and_changed_kind_are_undeliverable(transport: WebhookTransport) -> None:
    with pytest.raises(UndeliverableError, match="channel 'night-shift' is not configured"):
        transport.send(message(recipient="night-shift"))
    with pytest.raises(UndeliverableError, match="channel 'desk-hook' is now a webhook channel"):
        transport.send(message("teams", recipient="desk-hook"))


def test_missing_secret_names_the_variable(
    transport: WebhookTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDRTRIAL_TEST_HOOK_SECRET")
    with pytest.raises(ServerUnavailableError, match="EDRTRIAL_TEST_HOOK_SECRET is not set"):
        transport.send(message("webhook"))


def test_plain_http_only_to_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setenv("EDRTRIAL_TEST_TEAMS_URL", "http://teams.example.com/" + TEAMS_TOKEN)
    with WebhookTransport(channels("", ""), tmp_path) as transport:
        with pytest.raises(ServerUnavailableError, match="must be https") as caught:
            transport.send(message())
    assert TEAMS_TOKEN not in str(caught.value)
    assert receiver.hits == []


def test_urls_and_secret_never_reach_the_logs(
    transport: WebhookTransport,
    receiver: Receiver,
    secrets: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # the service's logging may quiet httpx
    caplog.set_level(logging.DEBUG, logger="httpcore")
    receiver.replies += [(200, "1"), (202, ""), (500, "oops"), (400, "bad")]
    for channel in ("teams", "webhook", "teams", "webhook"):
        try:
            transport.send(message(channel))
        except DeliveryError as err:
            logging.getLogger("test").warning("delivery failed: %s", err)
    assert len(receiver.hits) == 4
    assert "[channel desk-teams]" in caplog.text, "httpx's request line names the channel"
    assert leaked(caplog.text, secrets) == []
