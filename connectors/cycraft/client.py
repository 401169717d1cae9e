"""Thin client for one CyCraft AIR organisation: the key header, paging, errors; no domain logic."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from edrtrial.connectors.cycraft.auth import ApiKeyAuth
from edrtrial.connectors.cycraft.config import CyCraftSettings
from edrtrial.connectors.cycraft.models import dig
from edrtrial.connectors.support import retry_after_seconds
from edrtrial.errors import (
    ApiRefused,
    AuthError,
    Conflict,
    ResourceNotFound,
    SchemaDriftError,
    TransientError,
)

log = logging.getLogger(__name__)


class CyCraftClient:
    """Sends one organisation's authenticated requests; every failure becomes an edrtrial error."""

    def __init__(self, settings: CyCraftSettings, http: httpx.Client, auth: ApiKeyAuth) -> None:
        self._settings = settings
        self._http = http
        self._auth = auth
        self._paging = settings.mapping.paging

    def endpoint(self, template: str, **values: str) -> str:
        """A mapped endpoint template filled in, each value escaped as one path segment."""
        quoted = {name: quote(value, safe="") for name, value in values.items()}
        return template.format(tenant_id=quote(self._tenant, safe=""), **quoted)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET a path under base_url and return its JSON."""
        return self._request("GET", path, params=params)

    def send(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        """Send a JSON body; the JSON answered, or None for an empty answer."""
        return self._request(method, path, body=body)

    def item(self, path: str, body: Any) -> dict[str, Any]:
        """The object inside a single-object answer (at `mapping.item_path`)."""
        item_path = self._settings.mapping.item_path
        found = dig(body, item_path) if item_path else body
        if not isinstance(found, dict):
            where = f"at '{item_path}'" if item_path else "as its body"
            raise SchemaDriftError(
                f"tenant {self._tenant}: {self._url(path)} sent no object {where}"
            )
        return found

    def pages(self, path: str, params: Mapping[str, str]) -> Iterator[list[Any]]:
        """Items of a list endpoint, page by page, paged the way the mapping says."""
        query = dict(params)
        if self._paging.size_param:
            query[self._paging.size_param] = str(self._settings.page_size)
        if self._paging.style == "cursor":
            yield from self._cursor_pages(path, query)
        else:
            yield from self._numbered_pages(path, query)

    def _numbered_pages(self, path: str, query: dict[str, str]) -> Iterator[list[Any]]:
        page = self._paging.first_page
        previous: list[Any] | None = None
        while True:
            body = self.get(path, {**query, self._paging.page_param: str(page)})
            items = self._items(path, body)
            if items and items == previous:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {self._url(path)} ignored "
                    f"'{self._paging.page_param}' and repeated a page"
                )
            yield items
            # Without a page size of our own, only an empty page says the list is over.
            if not items or (self._paging.size_param and len(items) < self._settings.page_size):
                return
            page, previous = page + 1, items

    def _cursor_pages(self, path: str, query: dict[str, str]) -> Iterator[list[Any]]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            extra = {self._paging.cursor_param: cursor} if cursor is not None else {}
            body = self.get(path, {**query, **extra})
            yield self._items(path, body)
            token = dig(body, self._paging.next_cursor_path)
            if token is None or token == "":
                return
            cursor = str(token)
            if cursor in seen:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {self._url(path)} repeated a cursor (paging loop)"
                )
            seen.add(cursor)

    def _items(self, path: str, body: Any) -> list[Any]:
        items_path = self._paging.items_path
        items = dig(body, items_path) if items_path else body
        if not isinstance(items, list):
            where = f"at '{items_path}'" if items_path else "as its body"
            raise SchemaDriftError(f"tenant {self._tenant}: {self._url(path)} sent no list {where}")
        return items

    @property
    def _tenant(self) -> str:
        return self._settings.tenant_id

    def _url(self, path: str) -> str:
        return self._settings.base_url + path

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._url(path)
        try:
            response = self._http.request(
                method,
                url,
                params=params,
                json=body,
                auth=self._auth,
                timeout=self._settings.timeout_seconds,
            )
        except httpx.TimeoutException as err:
            raise TransientError(f"tenant {self._tenant}: {method} {url} timed out") from err
        except httpx.RequestError as err:
            raise TransientError(
                self._auth.redact(
                    f"tenant {self._tenant}: {method} {url} failed: {type(err).__name__}"
                )
            ) from err
        log.debug("tenant %s: %s %s -> %s", self._tenant, method, url, response.status_code)
        if not response.is_success:
            raise self._failure(method, url, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as err:
            raise SchemaDriftError(
                f"tenant {self._tenant}: {method} {url} answered {response.status_code} with a "
                f"body that is not JSON ({response.headers.get('Content-Type', 'no type')})"
            ) from err

    def _failure(self, method: str, url: str, response: httpx.Response) -> Exception:
        status = response.status_code
        excerpt = " ".join(response.text[:300].split()) or "no body"
        message = self._auth.redact(
            f"tenant {self._tenant}: {method} {url} answered {status}: {excerpt}"
        )
        if status == 429 or status >= 500:
            return TransientError(
                message, retry_after=retry_after_seconds(response, datetime.now(UTC))
            )
        if status in (401, 403):
            log.warning("tenant %s: CyCraft refused the API key (%s)", self._tenant, status)
            return AuthError(message, operator_action=self._auth.operator_action(status))
        if status == 404:
            return ResourceNotFound(message, status=status)
        if status == 409:
            return Conflict(message, status=status)
        if 400 <= status < 500:
            return ApiRefused(message, status=status)
        return SchemaDriftError(f"{message} (unexpected status)")
