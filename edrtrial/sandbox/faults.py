"""The one exception the sandbox's state raises to refuse an API request; the HTTP layer
turns it into the API's own error envelope."""

from __future__ import annotations

from dataclasses import dataclass


class ApiError(Exception):
    """A refusal the client sees as `status` with `{"error": {"code", "message"}}`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


ACTION_FAULTS = ("none", "error_after_record", "timeout_after_record", "error_before_record")
"""What an action request suffers: nothing; after its machine action is recorded, a 5xx
answer or no answer in time (the client gives up) — the action exists, as it may at
Microsoft after a lost answer, and a client must look for it, not send it again; or a 5xx
from a gateway before anything was recorded — the client finds nothing, however long it
looks."""
FAULT_REPEATS = ("once", "always")
TIMEOUT_FAULT_SECONDS = 5.0
"""How long `timeout_after_record` keeps the client waiting before a 504: longer than a test
client's timeout, short enough not to hold the sandbox's shutdown."""


@dataclass(slots=True)
class ActionFault:
    """The fault set through the control API, for the next action request or every one."""

    mode: str = "none"
    repeat: str = "once"

    def __post_init__(self) -> None:
        if self.mode not in ACTION_FAULTS:
            raise ValueError(f"action_fault must be one of {', '.join(ACTION_FAULTS)}")
        if self.repeat not in FAULT_REPEATS:
            raise ValueError(f"action_fault_repeat must be one of {', '.join(FAULT_REPEATS)}")

    def take(self) -> str:
        """The fault for this request; a `once` fault is used up by it."""
        mode = self.mode
        if self.repeat == "once":
            self.mode = "none"
        return mode
