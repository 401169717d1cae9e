"""The one exception the sandbox's state raises to refuse an API request; the HTTP layer
turns it into the API's own error envelope."""

from __future__ import annotations


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
