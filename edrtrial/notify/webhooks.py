"""Posting outbox messages to Microsoft Teams and to signed webhooks, over HTTPS.

A channel's URL is a credential (whoever holds a Teams webhook URL can post to the
channel), so neither it nor a signing secret is ever logged, stored or put in an error:
errors name the channel.

Teams (`kind = "teams"`)
    One Adaptive Card in a `message` envelope (see `teams_payload`). A legacy incoming
    webhook answers 200 with body `1`, a Workflows (Power Automate) webhook 202.

Signed webhook (`kind = "webhook"`)
    `POST` of a UTF-8 JSON object::

        {"id": "<outbox dedupe key>", "kind": "...", "subject": "...", "text": "...",
         "tenant_id": 3, "created_at": "2026-11-09T00:00:00Z"}

    `subject` and `text` are plain text with `&`, `<` and `>` written as `&amp;`, `&lt;`
    and `&gt;` (Slack's escaping rule, so a chat tool shows an EDR's `<!channel>` as text)
    and control characters shown as marks (`edrtrial.untrusted`: ESC as `␛`, a
    bidi override as `\u202e`); `html.unescape` gives back the text as shown.

    with these headers:

    - `X-Edrtrial-Timestamp`: Unix seconds when it was sent;
    - `X-Edrtrial-Signature`: `sha256=` and the lower-case hex HMAC-SHA256, keyed with the
      channel's signing secret (its UTF-8 bytes), of the timestamp, a `.`, and the raw
      request body bytes exactly as received;
    - `Idempotency-Key`: the `id`, percent-encoded (`urllib.parse.unquote` gives it back).

    A receiver recomputes the HMAC over `f"{timestamp}.".encode() + body`, compares with
    `hmac.compare_digest`, rejects a timestamp more than five minutes from its own clock
    (a replayed request), and drops an `Idempotency-Key` it has already processed: a
    message is delivered at least once, so a crash between sending and recording the
    delivery sends it again with the same key. Any 2xx answer counts as delivered.

Answers map onto the mail errors: 408 is retried, 429 and 5xx (and no connection at all)
are retried and postpone the channel's other messages to the next run, a redirect is not
followed (retried until the channel's url is updated), other 4xx give up at once with the
receiver's answer in the error.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from edrtrial import __version__
from edrtrial.config import ChannelConfig, Config
from edrtrial.errors import (
    ConfigError,
    DeliveryError,
    ServerUnavailableError,
    UndeliverableError,
)
from edrtrial.models import OutboxMessage
from edrtrial.secrets import resolve_secret
from edrtrial.timeutil import as_utc
from edrtrial.untrusted import chat_text, one_line

log = logging.getLogger(__name__)

WEBHOOK_CHANNELS = ("teams", "webhook")
TIMESTAMP_HEADER = "X-Edrtrial-Timestamp"
SIGNATURE_HEADER = "X-Edrtrial-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_TOLERANCE_SECONDS = 300
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
# A Teams message may be at most about 28 KB: bytes of JSON for the text's blocks, and
# characters of title.
TEAMS_TEXT_BUDGET = 24_000
TEAMS_TITLE_MAX = 500
_ANSWER_MAX = 300  # characters of a receiver's answer kept in an error
_LOOPBACK_NAMES = ("localhost",)

# While a channel is being posted to, httpx's request log line names the channel instead of
# the URL and httpcore's connection traces are dropped (they carry the host and port).
_posting_to: ContextVar[str | None] = ContextVar("edrtrial_webhook_channel", default=None)


class _HideChannelUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        channel = _posting_to.get()
        if channel is None:
            return True
        if record.name.startswith("httpcore"):
            return False
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"[channel {channel}]" if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_HIDE = _HideChannelUrls()
for _name in (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
):
    logging.getLogger(_name).addFilter(_HIDE)


def _plain_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _plain_block(text: str, **style: str) -> dict[str, Any]:
    """A RichTextBlock of one TextRun: text Teams shows as it is, never as markdown.

    A TextBlock renders a markdown subset (`[label](url)` becomes a link behind a label,
    `**`, `_`, lists), and a backslash escape is shown as a backslash by some Teams clients;
    a TextRun is plain text by the Adaptive Cards schema, in every client.
    """
    shown = one_line(text)  # a block is one line: a control, invisible or line break is shown
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": shown, **style}]}


def _text_blocks(text: str, budget: int) -> list[dict[str, Any]]:
    """One block per line, cut off with "…" where the JSON would pass `budget`."""
    blocks: list[dict[str, Any]] = []
    used = 0
    gap = False
    for raw in _plain_lines(text.strip("\n")):
        line = raw.rstrip()
        if not line.strip():
            gap = True
            continue
        block = _plain_block(line)
        block["spacing"] = "Medium" if gap or not blocks else "None"
        gap = False
        size = len(encode_json(block)) + 1
        if used + size > budget:
            room = budget - used - (size - len(line.encode("utf-8")))
            cut = line.encode("utf-8")[: max(room, 0)].decode("utf-8", "ignore").rstrip()
            block["inlines"][0]["text"] = (cut + " …") if cut else "…"
            blocks.append(block)
            break
        blocks.append(block)
        used += size
    return blocks


def teams_payload(msg: OutboxMessage) -> dict[str, Any]:
    """The Teams message: an Adaptive Card with the subject as title and the text below.

    An Adaptive Card in a `{"type": "message", "attachments": [...]}` envelope is the one
    format both the legacy incoming webhooks (connectors, being retired) and Workflows
    webhooks accept; Workflows refuse the older MessageCard. Version 1.2, as in Microsoft's
    webhook example, since the card uses nothing newer. Each line is its own wrapped
    TextBlock because Teams renders a lone newline inside a TextBlock inconsistently, and
    the text is cut to keep the message under Teams' size limit (about 28 KB). Every line
    is a RichTextBlock's TextRun (Adaptive Cards 1.2), which Teams shows as plain text: an
    alert title carrying `[click](https://…)` or `**` is shown as sent.
    """
    title = _plain_block(
        " ".join(msg.subject.split())[:TEAMS_TITLE_MAX], weight="Bolder", size="Medium"
    )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD,
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": [title, *_text_blocks(msg.body_text, TEAMS_TEXT_BUDGET)],
                    "msteams": {"width": "Full"},
                },
            }
        ],
    }


def webhook_payload(msg: OutboxMessage) -> dict[str, Any]:
    """The signed webhook's JSON object (its `id` is the dedupe key, stable across re-sends).

    `subject` and `text` carry `&`, `<`, `>` as entities (`chat_text`): the chat tools a
    webhook feeds read `<!channel>` and `<https://…|label>` as a mention and a hidden link.
    """
    return {
        "id": msg.dedupe_key,
        "kind": msg.kind,
        "subject": chat_text(one_line(msg.subject)),
        "text": chat_text(msg.body_text),
        "tenant_id": msg.tenant_id,
        "created_at": as_utc(msg.created_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def encode_json(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are sent and signed."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` keyed with the signing secret."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """A receiver's check: right signature, and sent within `tolerance` seconds of `now`."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def _one_line(text: str, limit: int = _ANSWER_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


class _Target:
    """A channel with its URL and secret resolved; kept only in memory, for one run."""

    def __init__(self, channel: ChannelConfig, url: SecretStr, secret: SecretStr | None) -> None:
        self.channel = channel
        self.url = url
        self.secret = secret

    def scrub(self, text: str) -> str:
        """Remove the URL (and its path) and the secret from text a library produced."""
        url = self.url.get_secret_value()
        hidden = [url, httpx.URL(url).raw_path.decode("ascii", "replace")]
        if self.secret is not None:
            hidden.append(self.secret.get_secret_value())
        for value in sorted(hidden, key=len, reverse=True):
            if len(value) >= 4:
                text = text.replace(value, "[redacted]")
        return text


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookTransport:
    """Posts outbox messages to the configured Teams and webhook channels, by channel name.

    One HTTP client for a delivery run; close it (or use `with`) when the run ends.
    """

    def __init__(
        self,
        channels: Iterable[ChannelConfig],
        base_dir: Path,
        *,
        timeout_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.channels = {c.name: c for c in channels}
        self.base_dir = base_dir
        self.clock = clock
        self._timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0))
        self._http_transport = http_transport
        self._client: httpx.Client | None = None
        self._targets: dict[str, _Target] = {}

    def __enter__(self) -> WebhookTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client and forget the resolved URLs and secrets."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._targets.clear()

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on first use (a run with only mail needs none)."""
        if self._client is None:
            self._client = httpx.Client(
                timeout=self._timeout,
                follow_redirects=False,  # a redirect would carry the message elsewhere
                headers={"User-Agent": f"edrtrial/{__version__}"},
                transport=self._http_transport,
            )
        return self._client

    def _target(self, msg: OutboxMessage) -> _Target:
        name = msg.recipient
        channel = self.channels.get(name)
        if channel is None:
            known = ", ".join(sorted(self.channels)) or "none"
            raise UndeliverableError(
                f"channel {name!r} is not configured (desk.channels has: {known})"
            )
        if channel.kind != msg.channel:
            raise UndeliverableError(
                f"channel {name!r} is now a {channel.kind} channel; "
                f"this message was queued for {msg.channel}"
            )
        found = self._targets.get(name)
        if found is not None:
            return found
        if channel.url is None:  # the config refuses this; checked for the type checker
            raise UndeliverableError(f"channel {name!r} has no url")
        try:
            url = resolve_secret(channel.url, self.base_dir, f"channel {name!r} url")
            secret = None
            if channel.kind == "webhook":
                if channel.signing_secret is None:
                    raise ConfigError(f"channel {name!r} has no signing_secret")
                secret = resolve_secret(
                    channel.signing_secret, self.base_dir, f"channel {name!r} signing_secret"
                )
        except ConfigError as err:
            # An operator fixes the variable or file; until then the channel is unavailable.
            raise ServerUnavailableError(str(err)) from None
        try:
            parsed = httpx.URL(url.get_secret_value())
        except httpx.InvalidURL:
            raise ServerUnavailableError(f"channel {name!r}: its url is not a URL") from None
        if parsed.scheme != "https" and not (parsed.scheme == "http" and _loopback(parsed.host)):
            raise ServerUnavailableError(f"channel {name!r}: its url must be https")
        found = _Target(channel, url, secret)
        self._targets[name] = found
        return found

    def send(self, msg: OutboxMessage) -> None:
        """Post one message to its channel; raises `DeliveryError` (a subclass saying why)."""
        if msg.channel not in WEBHOOK_CHANNELS:
            raise UndeliverableError(f"outbox message {msg.id} is not for a webhook channel")
        target = self._target(msg)
        name = target.channel.name
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if msg.channel == "teams":
            body = encode_json(teams_payload(msg))
        else:
            body = encode_json(webhook_payload(msg))
            if target.secret is None:  # `_target` resolves one for every webhook channel
                raise ServerUnavailableError(f"channel {name!r} has no signing secret")
            stamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = signature(target.secret.get_secret_value(), stamp, body)
            headers[IDEMPOTENCY_HEADER] = quote(msg.dedupe_key, safe="")
        where = f"{msg.channel} channel {name!r}"
        token = _posting_to.set(name)
        try:
            response = self.client.post(
                target.url.get_secret_value(), content=body, headers=headers
            )
        except httpx.TimeoutException:
            raise ServerUnavailableError(f"{where}: no answer in time") from None
        except httpx.TransportError as err:
            # The library's text may quote the URL; the cause is dropped for the same reason.
            reason = target.scrub(str(err)) or type(err).__name__
            raise ServerUnavailableError(f"{where}: cannot connect: {reason}") from None
        finally:
            _posting_to.reset(token)
        _check_answer(response, where, target)


def _check_answer(response: httpx.Response, where: str, target: _Target) -> None:
    status = response.status_code
    answer = target.scrub(_one_line(response.text))
    said = f"{status} {answer}".rstrip()
    if 200 <= status < 300:
        # Legacy Teams connectors answer throttling and some failures with a 200 and a text.
        if "HTTP error 429" in answer:
            raise ServerUnavailableError(f"{where}: throttled: {said}")
        if answer.startswith("Webhook message delivery failed"):
            raise DeliveryError(f"{where}: {said}")
        return
    if status == 429 or status >= 500:
        raise ServerUnavailableError(f"{where}: {said}")
    if status == 408:
        raise DeliveryError(f"{where}: {said}")
    if 300 <= status < 400:
        # Redirects are not followed; the channel's URL needs updating, then it can go.
        raise ServerUnavailableError(f"{where}: redirected ({status}); update the channel's url")
    raise UndeliverableError(f"{where}: refused: {said}")


def webhook_transport_from_config(config: Config) -> WebhookTransport:
    """The transport for the desk's Teams and webhook channels (resolved on first use)."""
    return WebhookTransport(config.settings.desk.escalation_channels(), config.base_dir)
