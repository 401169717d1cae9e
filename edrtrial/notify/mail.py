"""Turning an outbox row into a MIME message and handing it to SMTP or to a folder of .eml files."""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import tempfile
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from edrtrial import files
from edrtrial.config import Config, SmtpConfig
from edrtrial.errors import (
    ArchiveError,
    ConfigError,
    DeliveryError,
    ServerUnavailableError,
    UndeliverableError,
)
from edrtrial.models import OutboxMessage
from edrtrial.notify.archive import read_archived
from edrtrial.secrets import resolve_secret
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import visible

# 7bit makes the library pick base64 / quoted-printable, so no relay needs 8BITMIME.
MAIL_POLICY = policy.default.clone(cte_type="7bit")
KIND_HEADER = "X-Edrtrial-Kind"
_MESSAGE_ID = re.compile(r"^<edrtrial-outbox-(\d+)@[^>]+>$")
_SLUG = re.compile(r"[^a-z0-9]+")


class MailTransport(Protocol):
    """Something that accepts a finished message or raises `DeliveryError`."""

    def send(self, message: EmailMessage) -> None:
        """Deliver one message; return only once the next hop has accepted it."""
        ...


def _one_line(value: str) -> str:
    # Header values must not carry line breaks (an alert title may); collapse all whitespace,
    # and show what is left of control characters (ESC, a bidi override) rather than obey it.
    return visible(" ".join(value.split()))


def build_message(msg: OutboxMessage, *, sender: str, sender_name: str) -> EmailMessage:
    """The MIME message for an outbox row; its Message-ID is stable so a re-send is recognisable."""
    if msg.id is None:
        raise ValueError("the outbox message has no id yet (flush it before building)")
    local, _, domain = sender.rpartition("@")
    if not local:
        raise ConfigError(f"mail.from_address {sender!r} is not an e-mail address")
    try:
        email = EmailMessage(policy=MAIL_POLICY)
        email["From"] = Address(display_name=_one_line(sender_name), addr_spec=sender)
        email["To"] = _one_line(msg.recipient)
        email["Subject"] = _one_line(msg.subject)
        email["Date"] = format_datetime(to_jst(msg.created_at))
        email["Message-ID"] = f"<edrtrial-outbox-{msg.id}@{domain or 'localhost'}>"
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
        email[KIND_HEADER] = _one_line(msg.kind)
        # Bodies are rendered with controls made visible (reports/render.py); a body written
        # another way gets the same treatment here, so no mail carries them.
        email.set_content(visible(msg.body_text))
        if msg.body_html is not None:
            email.add_alternative(visible(msg.body_html), subtype="html")
        if msg.report is not None:
            _attach(email, msg)
    except ArchiveError as err:
        raise UndeliverableError(f"outbox message {msg.id}: {err}") from err
    except (ValueError, TypeError, IndexError) as err:
        raise UndeliverableError(f"cannot build outbox message {msg.id}: {err}") from err
    return email


def _attach(email: EmailMessage, msg: OutboxMessage) -> None:
    """Attach the archived report the mail carries, as it was archived (digest checked)."""
    report = msg.report
    assert report is not None
    maintype, _, subtype = report.content_type.partition("/")
    # A text part without a charset is US-ASCII to every reader (RFC 2046), so a mail client
    # showing the seat CSV inline would garble its Japanese: the archive writes text as UTF-8.
    params = {"charset": "utf-8"} if maintype == "text" else None
    email.add_attachment(
        read_archived(report),
        maintype=maintype,
        subtype=subtype or "octet-stream",
        filename=_one_line(report.filename),
        params=params,
    )


def _smtp_reason(err: smtplib.SMTPException) -> str:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return f"recipient refused ({_refusals(err.recipients)})"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{err.smtp_code} {_text(err.smtp_error)}"
    return str(err) or type(err).__name__


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in refused.items())


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _permanent(err: smtplib.SMTPException) -> bool:
    # 5xx about this recipient or this content will not change; 5xx about us (auth, sender)
    # is a configuration problem that an operator fixes, after which the message can go.
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in err.recipients.values())
    if isinstance(err, smtplib.SMTPDataError):
        return err.smtp_code >= 500
    return False


class SmtpTransport:
    """Sends through any SMTP server (STARTTLS, implicit TLS or plain), one connection a send."""

    def __init__(self, settings: SmtpConfig, password: SecretStr | None) -> None:
        if settings.username and password is None:
            raise ValueError("an SMTP username is set but no password was given")
        self.settings = settings
        self._password = password

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.ssl:
                context = ssl.create_default_context()
                return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
            return smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        except (OSError, smtplib.SMTPException) as err:
            raise ServerUnavailableError(f"SMTP {self.where}: cannot connect: {err}") from err

    def _session_start(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        try:
            if s.starttls and not s.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.username and self._password is not None:
                smtp.login(s.username, self._password.get_secret_value())
        except smtplib.SMTPAuthenticationError as err:
            # The server's reply, never our password, goes into the message.
            raise ServerUnavailableError(
                f"SMTP {self.where}: login as {s.username!r} refused: {_smtp_reason(err)}"
            ) from err
        except smtplib.SMTPException as err:
            raise ServerUnavailableError(
                f"SMTP {self.where}: session set-up failed: {_smtp_reason(err)}"
            ) from err
        except OSError as err:
            raise ServerUnavailableError(
                f"SMTP {self.where}: session set-up failed: {err}"
            ) from err

    def send(self, message: EmailMessage) -> None:
        """Deliver one message; raises `DeliveryError` (or a subclass saying why) on failure."""
        smtp = self._connect()
        try:
            self._session_start(smtp)
            try:
                refused = smtp.send_message(message)
            except smtplib.SMTPServerDisconnected as err:
                raise ServerUnavailableError(f"SMTP {self.where}: disconnected: {err}") from err
            except smtplib.SMTPException as err:
                cls = UndeliverableError if _permanent(err) else DeliveryError
                raise cls(f"SMTP {self.where}: {_smtp_reason(err)}") from err
            except OSError as err:
                raise ServerUnavailableError(f"SMTP {self.where}: {err}") from err
            if refused:
                raise DeliveryError(f"SMTP {self.where}: refused {_refusals(refused)}")
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()  # the message was accepted or the error is already raised


class FileTransport:
    """Writes each message as an .eml file, for set-ups without SMTP and for inspection."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: EmailMessage) -> Path:
        """`<outbox id>-<kind>.eml`: deterministic, so a re-delivery overwrites the same file."""
        match = _MESSAGE_ID.match(str(message.get("Message-ID", "")).strip())
        slug = _SLUG.sub("-", str(message.get(KIND_HEADER, "mail")).lower()).strip("-") or "mail"
        if match:
            return self.directory / f"{match.group(1)}-{slug}.eml"
        digest = hashlib.sha256(message.as_bytes()).hexdigest()[:16]
        return self.directory / f"x{digest}-{slug}.eml"

    def send(self, message: EmailMessage) -> None:
        """Write the file atomically (temp file, fsync, rename)."""
        target = self.path_for(message)
        tmp_name = ""
        try:
            files.private_dir(self.directory)  # mail names companies, PCs and users
            with tempfile.NamedTemporaryFile(  # created 0600, as mkstemp does
                dir=self.directory, prefix=".tmp-", suffix=".eml", delete=False
            ) as handle:
                tmp_name = handle.name
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except OSError as err:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
            raise ServerUnavailableError(f"cannot write {target}: {err.strerror or err}") from err


def transport_from_config(config: Config) -> MailTransport:
    """SMTP when `[mail.smtp]` is configured, else .eml files in `mail.outbox_dir`."""
    mail = config.settings.mail
    if mail.smtp is None:
        return FileTransport(config.resolve(mail.outbox_dir))
    password = None
    if mail.smtp.password is not None:
        password = resolve_secret(mail.smtp.password, config.base_dir, "mail.smtp.password")
    return SmtpTransport(mail.smtp, password)
