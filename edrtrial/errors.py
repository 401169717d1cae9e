"""One taxonomy of errors, each class meaning something a caller can act on."""

from __future__ import annotations


class EdrTrialError(Exception):
    """Base of every error edrtrial raises on purpose."""


class ConfigError(EdrTrialError):
    """The configuration is wrong; the message names the file and the key."""


class PlaybookError(EdrTrialError):
    """A playbook file is wrong; the message names the file, the line and the problem."""


class StoreError(EdrTrialError):
    """The database is unusable as it is (for example not migrated)."""


class LockHeldError(EdrTrialError):
    """Another scheduler already owns this store."""


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


class TransientError(ConnectorError):
    """Worth retrying later: throttling, 5xx, timeouts, connection errors."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Credentials or consent are wrong; polling stops until an operator fixes it."""

    def __init__(self, message: str, operator_action: str = "") -> None:
        super().__init__(message)
        self.operator_action = operator_action


class PermanentError(ConnectorError):
    """The request itself is refused and will be refused again (4xx other than auth/429)."""


class SchemaDriftError(ConnectorError):
    """The API answered with a shape we do not understand."""


class TransitionError(EdrTrialError):
    """A state change does not fit the entity as it is now; the message says why."""


class ActionRefused(EdrTrialError):
    """A device action cannot be taken now; nothing was planned or sent.

    The message says why (already isolated, one under way, another tenant's device or
    connector) and what to do instead: show it to the operator; a playbook just moves on.
    """
