"""One taxonomy of errors, each class meaning something a caller can act on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self


class EdrTrialError(Exception):
    """Base of every error edrtrial raises on purpose.

    Its message is one line: any text it quotes (an EDR's device name, a rule's name) is
    shown on that line, however it was written. An error that lists several problems
    (every mistake in a playbook or a config) is made with `listing`: its lines are the
    service's own, and are shown one under another.
    """

    lines: tuple[str, ...] = ()
    """The problems of a `listing`, one each; empty for a one-line error."""

    exit_code: int = 2
    """The CLI's exit status for it: 2, unless a supervisor must tell it apart."""

    @classmethod
    def listing(cls, lines: Iterable[str]) -> Self:
        """The error listing each of `lines` (each shown on one line, under the first)."""
        kept = tuple(lines)
        err = cls("\n".join(kept))
        err.lines = kept
        return err


class ConfigError(EdrTrialError):
    """The configuration is wrong; the message names the file and the key."""


class PlaybookError(EdrTrialError):
    """A playbook file is wrong; the message names the file, the line and the problem."""


class IntakeError(EdrTrialError):
    """A file of applications (or of earlier participants) cannot be read as a whole; the
    message names the file, the line where it can, and what to do. A bad row is not one: it
    is reported with its line and the good rows are imported."""


class StoreError(EdrTrialError):
    """The database is unusable as it is (for example not migrated)."""


class LockHeldError(EdrTrialError):
    """Another service already owns this store.

    Exit status 3, as when a running service finds its store taken: a supervisor is told
    not to restart into a refusal (`RestartPreventExitStatus=3`)."""

    exit_code = 3


class ArchiveError(EdrTrialError):
    """An archived report's file is missing, unreadable, or no longer the file that was sent."""


class ReportError(EdrTrialError):
    """A report cannot be made as asked: a period that has not ended, a file type unknown."""


class DeliveryError(EdrTrialError):
    """A notification could not be delivered this time; it stays queued."""


class ServerUnavailableError(DeliveryError):
    """The mail server or channel cannot be reached or refuses us.

    Later messages on the same route would fail the same way: the outbox retries this one
    later and postpones the others of its route to the next run.
    """


class UndeliverableError(DeliveryError):
    """This message is refused for good (bad address, rejected content, unknown channel).

    Retrying cannot help: the outbox gives it up at once and an operator reads its error.
    """


class ConnectorError(EdrTrialError):
    """Talking to an EDR tenant failed."""


class UnexpectedTenantError(ConnectorError):
    """Something no one foresaw broke one tenant's poll or inventory (a value the store
    refuses, a bug): that tenant fails and is retried, the others go on."""


class TransientError(ConnectorError):
    """Worth retrying later: throttling, 5xx, timeouts, connection errors."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutcomeUnknown(TransientError):
    """A request that changes something may have been carried out, but no answer says so.

    It timed out or lost its connection after it was sent, the EDR answered 5xx, or its
    success answer could not be read. Unlike a refusal (4xx), the EDR may have acted: the
    caller reads back what exists (e.g. the device's machine actions) before retrying or
    giving up, so one request never becomes two actions.
    """


class AuthError(ConnectorError):
    """Credentials or consent are wrong; polling stops until an operator fixes it."""

    def __init__(self, message: str, operator_action: str = "") -> None:
        super().__init__(message)
        self.operator_action = operator_action


class PermanentError(ConnectorError):
    """The request itself is refused and will be refused again (4xx other than auth/429)."""


class ApiRefused(PermanentError):
    """The EDR's API refused the request with a 4xx other than auth and throttling.

    Sending it again gets the same answer. `status` is the HTTP status; `code` and
    `api_message` are the API's own error code and message, kept apart from the text so a
    caller can branch on them ("" when the answer carries none).
    """

    def __init__(self, message: str, *, status: int, code: str = "", api_message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.api_message = api_message


class ResourceNotFound(ApiRefused):
    """A 404: the object asked for does not exist (any more); a caller may leave it out."""


class Conflict(ApiRefused):
    """A 409: the request clashes with the object's state (for a device action: a task of
    that kind is already running, which the caller may look up and reuse)."""


class CommentNotAdded(ConnectorError):
    """The verdict was written to the alert, but the comment sent after it was not.

    The alert is settled in the EDR (resolved, classified): the caller records it as
    written, keeps this reason beside it, and sends neither again; a comment whose request
    timed out may be there already, so a retry could post it twice.
    """


class SchemaDriftError(ConnectorError):
    """The API answered with a shape we do not understand."""


class Unmappable(EdrTrialError):
    """One source record the connector cannot turn into an edrtrial record (no id, an
    unreadable timestamp, a field of the wrong type, not a JSON object).

    A record-level problem, not a connector failure: the record is set aside in quarantine
    with `reason` and the rest of its page goes through. `reason` says what is wrong and
    where (a field or a JSON path).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransitionError(EdrTrialError):
    """A state change does not fit the entity as it is now; the message says why."""


class TicketError(EdrTrialError):
    """A desk step does not fit the ticket as it is (or as asked); the message says why."""


class ActorError(EdrTrialError):
    """Who a command acts for cannot be accepted (a system actor's name); nothing was done."""


class TenantMismatchError(EdrTrialError, ValueError):
    """Records of two tenants met in one notice, report or action: refused, never sent.

    A ValueError too, because it is a wrong argument of the caller's making (a bug to fix,
    not a condition to retry).
    """


class ActionRefused(EdrTrialError):
    """A device action cannot be taken now; nothing was planned or sent.

    The message says why (already isolated, one under way, another tenant's device or
    connector) and what to do instead: show it to the operator; a playbook just moves on.
    """


class JourneyError(EdrTrialError):
    """A step the company's journey does not allow now (it names where the company stands)."""


class ReportPeriodError(EdrTrialError, ValueError):
    """A report asked for a period it cannot cover: one that ends before it starts, or
    whose last day has not come yet (its figures would be partial, read as final)."""


class AccountError(EdrTrialError):
    """A console account cannot be made or changed as asked (the message says why)."""


class SignInRefused(EdrTrialError):
    """A sign-in to the console is refused. The message is the one shown to the person: it
    never says whether the account exists."""
