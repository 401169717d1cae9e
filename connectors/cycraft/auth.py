"""The organisation's API key: which header carries it, and what to do when it is refused."""

from __future__ import annotations

from collections.abc import Generator

import httpx
from pydantic import SecretStr

from edrtrial.connectors.cycraft.config import CyCraftSettings

REDACTED = "**********"


class ApiKeyAuth(httpx.Auth):
    """Puts the API key into the configured header of each request, and keeps it out of text."""

    def __init__(self, settings: CyCraftSettings, key: SecretStr) -> None:
        self._settings = settings
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header (httpx calls this for every request sent with this auth)."""
        value = self._settings.auth_template.format(key=self._key.get_secret_value())
        request.headers[self._settings.auth_header] = value
        yield request

    def redact(self, text: str) -> str:
        """`text` with the key masked (for a server that echoes what it was sent)."""
        secret = self._key.get_secret_value()
        return text.replace(secret, REDACTED) if secret else text

    def operator_action(self, status: int) -> str:
        """What an operator does after a 401 or 403, naming where the key is configured."""
        settings = self._settings
        where = f"put it where api_key points ({settings.api_key})"
        if status == 401:
            return (
                "CyCraft AIR did not accept the API key: renew the API key in the CyCraft AIR "
                f"console, {where}, check that tenant_id ({settings.tenant_id}) is the "
                f"organisation id and that the key goes in the {settings.auth_header} header, "
                "then resume the tenant."
            )
        return (
            f"The API key may not do this in organisation {settings.tenant_id}: check that "
            "tenant_id is the organisation id the key belongs to and that the key's role "
            f"allows the request; renew the API key if its role changed, {where}, then resume "
            "the tenant."
        )
