"""Thin client for one CyCraft AIR organisation: the key header, paging, errors; no domain logic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
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
    OutcomeUnknown,
    ResourceNotFound,
    SchemaDriftError,
    TransientError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

READS = 3  # tries at reading a page whose answer cannot be read, the first included
REREAD_PAUSE = 0.5  # seconds before reading it again; doubles each time
_READ = frozenset({"GET"})  # requests that change nothing, whatever becomes of them
# Failures that prove the request never reached CyCraft, so nothing can have been done.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class CyCraftClient:
    """Sends one organisation's authenticated requests; every failure becomes an edrtrial error."""

    def __init__(
        self,
        settings: CyCraftSettings,
        http: httpx.Client,
        auth: ApiKeyAuth,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._http = http
        self._auth = auth
        self._paging = settings.mapping.paging
        self._sleep = sleep

    def endpoint(self, template: str, **values: str) -> str:
        """A mapped endpoint template filled in, each value escaped as one path segment."""
        quoted = {name: quote(value, safe="") for name, value in values.items()}
        return template.format(tenant_id=quote(self._tenant, safe=""), **quoted)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET a path under base_url and return its JSON (an unreadable answer is read again)."""
        return self._read(path, params, _whole)

    def send(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        """Send a JSON body; the JSON answered, or None for an empty answer.

        Sent once: when no readable answer says what happened (timed out or cut off after
        sending, 5xx, a 2xx that cannot be read), it raises `OutcomeUnknown`, because CyCraft
        may have carried it out; only a failure to connect, or a 429, proves it was not.
        """
        url = self._url(path)
        return self._json(method, url, self._exchange(method, url, None, body))

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
            numbered = {**query, self._paging.page_param: str(page)}
            items = self._read(path, numbered, partial(self._items, path))
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
            body = self._read(path, {**query, **extra}, partial(self._checked_page, path))
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

    def _checked_page(self, path: str, body: Any) -> Any:
        """The whole page (its cursor is read from it), once it is known to hold its list."""
        self._items(path, body)
        return body

    def _read(self, path: str, params: Mapping[str, str] | None, read: Callable[[Any], T]) -> T:
        """GET, and `read` what came back; an answer that cannot be read (cut short, empty, a
        proxy's page, no list where the page keeps it) is read again a bounded number of
        times, because the next answer is usually whole and a failed poll costs a cycle."""
        attempt = 0
        while True:
            attempt += 1
            url = self._url(path)
            response = self._exchange("GET", url, params, None)  # its failures are not re-read
            try:
                return read(self._json("GET", url, response))
            except SchemaDriftError as unreadable:
                if attempt >= READS:
                    raise SchemaDriftError(f"{unreadable}, {attempt} times") from unreadable
                pause = REREAD_PAUSE * 2 ** (attempt - 1)
                log.info("%s; reading it again in %.1f s", unreadable, pause)
                self._sleep(pause)

    def _items(self, path: str, body: Any) -> list[Any]:
        """The page's list where the mapping says it is; without it the page is unreadable."""
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

    def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> httpx.Response:
        """One request and its successful response; every failure as an edrtrial error."""
        try:
            response = self._http.request(
                method,
                url,
                params=params,
                json=body,
                auth=self._auth,
                timeout=self._settings.timeout_seconds,
            )
        except httpx.RequestError as err:
            raise self._transport_failure(method, url, err) from err
        log.debug("tenant %s: %s %s -> %s", self._tenant, method, url, response.status_code)
        if not response.is_success:
            raise self._failure(method, url, response)
        return response

    def _json(self, method: str, url: str, response: httpx.Response) -> Any:
        """The JSON answered; None for an empty answer to a write, which has nothing to say."""
        # A write CyCraft accepted but whose answer we cannot read may have been carried out.
        drift = SchemaDriftError if method in _READ else OutcomeUnknown
        if not response.content.strip():
            if method in _READ:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {method} {url} answered {response.status_code} "
                    "with an empty body"
                )
            return None
        try:
            return response.json()
        except ValueError as err:
            raise drift(
                f"tenant {self._tenant}: {method} {url} answered {response.status_code} with a "
                f"body that is not JSON ({response.headers.get('Content-Type', 'no type')})"
            ) from err

    def _transport_failure(self, method: str, url: str, err: httpx.RequestError) -> Exception:
        """No answer: a write that may have reached CyCraft is `OutcomeUnknown`, else transient."""
        doubtful = method not in _READ and not isinstance(err, _NOT_SENT)
        error = OutcomeUnknown if doubtful else TransientError
        if isinstance(err, httpx.TimeoutException):
            return error(f"tenant {self._tenant}: {method} {url} timed out")
        return error(
            self._auth.redact(f"tenant {self._tenant}: {method} {url} failed: {type(err).__name__}")
        )

    def _failure(self, method: str, url: str, response: httpx.Response) -> Exception:
        status = response.status_code
        excerpt = " ".join(response.text[:300].split()) or "no body"
        message = self._auth.redact(
            f"tenant {self._tenant}: {method} {url} answered {status}: {excerpt}"
        )
        if status == 429 or status >= 500:
            # A 429 was refused unprocessed; a 5xx to a write may have been carried out.
            doubtful = status >= 500 and method not in _READ
            return (OutcomeUnknown if doubtful else TransientError)(
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


def _whole(body: Any) -> Any:
    return body
