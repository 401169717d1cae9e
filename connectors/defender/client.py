"""Thin client for Graph security and the MDE API: tokens, budgets, retries, paging, errors.

No domain logic: it sends one tenant's requests and turns every failure into an edrtrial error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from edrtrial.connectors.defender.auth import TokenProvider
from edrtrial.connectors.defender.budget import HOUR, MINUTE, CallBudget, Clock, Window
from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.connectors.defender.models import ODataPage
from edrtrial.connectors.support import retry_after_seconds
from edrtrial.errors import (
    ApiRefused,
    AuthError,
    OutcomeUnknown,
    ResourceNotFound,
    SchemaDriftError,
    TransientError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# One MDE page covers an SME (<= 300 users x 5 devices); the documented maximum is 10,000.
MDE_PAGE_SIZE = 10_000
ATTEMPTS = 3  # tries per request, the first included
BACKOFF_BASE = 0.5  # seconds before the second try; doubles, plus up to as much again of jitter
# Repeating these cannot do twice what was asked (PATCH sets values, it does not add them).
_IDEMPOTENT = frozenset({"GET", "PATCH"})
# A read whose 2xx body cannot be read (cut short, empty, a proxy's HTML page, a list page
# without its list) is read again: the next answer is usually whole, and a poll that gave up
# would cost the tenant a cycle.
_REREAD = frozenset({"GET"})
# Failures that prove the request never reached Microsoft, so even a POST may be sent again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_PERMISSIONS = (
    "Graph: SecurityAlert.Read.All (ReadWrite.All for write_back), SecurityIncident.Read.All; "
    "WindowsDefenderATP: Machine.Read.All, Machine.Isolate, Machine.Scan, Machine.Offboard"
)


class Api(StrEnum):
    """Which API a request goes to; each has its own base URL, token scope and budget."""

    GRAPH = "graph"
    MDE = "mde"


class DefenderClient:
    """Sends one tenant's authenticated requests; every failure becomes an edrtrial error."""

    def __init__(
        self,
        settings: DefenderSettings,
        http: httpx.Client,
        tokens: TokenProvider,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._tokens = tokens
        self._clock = clock or Clock()
        self._bases = {Api.GRAPH: settings.graph_base_url, Api.MDE: settings.mde_base_url}
        self._scopes = {Api.GRAPH: settings.graph_scope, Api.MDE: settings.mde_scope}
        self._budgets = {
            Api.GRAPH: CallBudget([Window(settings.graph_calls_per_minute, MINUTE)], self._clock),
            Api.MDE: CallBudget(
                [
                    Window(settings.mde_calls_per_minute, MINUTE),
                    Window(settings.mde_calls_per_hour, HOUR),
                ],
                self._clock,
            ),
        }

    def get_json(
        self, api: Api, url_or_path: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """GET a JSON object; a path joins the API's base URL, a full URL is used verbatim."""
        return self._request("GET", api, url_or_path, params=params, read=_whole)

    def post_json(self, api: Api, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body and return the JSON object answered (any 2xx)."""
        return self._request("POST", api, path, body=body, read=_whole)

    def patch_json(self, api: Api, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH a JSON body (Graph updates answer the updated entity)."""
        return self._request("PATCH", api, path, body=body, read=_whole)

    def graph_pages(self, path: str, params: Mapping[str, str]) -> Iterator[list[Any]]:
        """Items of a Graph list, page by page, following `@odata.nextLink` verbatim."""
        url: str | None = path
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        while url is not None:
            page = self._get_page(Api.GRAPH, url, query)
            yield page.value
            url, query = page.next_link, None
            if url is not None:
                if url in seen:
                    raise SchemaDriftError(
                        f"tenant {self._tenant}: Graph repeated the nextLink {url} (paging loop)"
                    )
                seen.add(url)

    def mde_pages(
        self, path: str, params: Mapping[str, str] | None = None, page_size: int = MDE_PAGE_SIZE
    ) -> Iterator[list[Any]]:
        """Items of an MDE list via `$top`/`$skip`; MDE's nextLink is unreliable and never used."""
        skip = 0
        previous: list[Any] | None = None
        while True:
            query = {**(params or {}), "$top": str(page_size), "$skip": str(skip)}
            items = self._get_page(Api.MDE, path, query).value
            if items and items == previous:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {path} ignored $skip and repeated a page"
                )
            yield items
            if len(items) < page_size:
                return
            skip, previous = skip + page_size, items

    @property
    def _tenant(self) -> str:
        return self._settings.tenant_id

    def _get_page(self, api: Api, url_or_path: str, params: Mapping[str, str] | None) -> ODataPage:
        """One OData page; a body that is not one is unreadable, so it is read again too."""

        def page(body: dict[str, Any]) -> ODataPage:
            try:
                return ODataPage.model_validate(body)
            except ValidationError as err:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: GET {self._url(api, url_or_path)} did not answer "
                    "an OData list (no 'value' array)"
                ) from err

        return self._request("GET", api, url_or_path, params=params, read=page)

    def _url(self, api: Api, url_or_path: str) -> str:
        base = self._bases[api]
        if not url_or_path.startswith(("https://", "http://")):
            return base + "/" + url_or_path.lstrip("/")
        if url_or_path != base and not url_or_path.startswith(base + "/"):
            # A link elsewhere would carry the tenant's bearer token off to another host.
            raise SchemaDriftError(
                f"tenant {self._tenant}: refusing to follow {url_or_path} outside {base}"
            )
        return url_or_path

    def _budget_key(self, api: Api, method: str, url: str) -> str:
        """Graph budgets all /security calls together, MDE each API (list, get, each action)."""
        if api is Api.GRAPH:
            return "security"
        path = httpx.URL(url).path.removeprefix(httpx.URL(self._bases[api]).path)
        parts = [part for part in path.split("/") if part and part.lower() not in ("api", "v1.0")]
        if len(parts) >= 2:
            parts[1] = "{id}"
        return f"{method} {'/'.join(parts)}"

    def _request(
        self,
        method: str,
        api: Api,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        read: Callable[[dict[str, Any]], T],
    ) -> T:
        """Send with retries; `read` turns the JSON object answered into what the caller
        wants, and whatever it cannot read (SchemaDriftError) counts as an unreadable answer."""
        url = self._url(api, url_or_path)
        key = self._budget_key(api, method, url)
        attempt = 0
        while True:
            attempt += 1
            self._spend(api, key)
            try:
                response = self._send(method, api, url, params, body)
            except httpx.RequestError as err:
                failure = self._transport_failure(method, url, err)
                delay = self._transport_retry(method, err, attempt)
                if delay is None:
                    raise failure from err
                self._pause(f"{failure}; retrying", delay, attempt)
                continue
            if response.is_success:
                try:
                    return read(self._json(method, response))
                except SchemaDriftError as unreadable:
                    if method not in _REREAD:
                        raise
                    if attempt >= ATTEMPTS:
                        raise SchemaDriftError(f"{unreadable}, {attempt} times") from unreadable
                    self._pause(f"{unreadable}; reading it again", self._backoff(attempt), attempt)
                    continue
            failure = self._failure(method, api, response)
            delay = self._status_retry(method, api, key, response, attempt)
            if delay is None:
                raise failure
            self._pause(str(failure), delay, attempt)

    def _send(
        self,
        method: str,
        api: Api,
        url: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._tokens.token(self._scopes[api])}"}
        if api is Api.GRAPH:
            headers["Prefer"] = "include-unknown-enum-members"  # newer enum values, not a stand-in
        response = self._http.request(
            method,
            url,
            params=params,
            json=body,
            headers=headers,
            timeout=self._settings.timeout_seconds,
        )
        log.debug("tenant %s: %s %s -> %s", self._tenant, method, url, response.status_code)
        return response

    def _spend(self, api: Api, key: str) -> None:
        """Wait for a budget slot if that is quick, else hand the wait to the scheduler."""
        budget, waited = self._budgets[api], 0.0
        while (wait := budget.take(key)) > 0:
            if waited + wait > self._settings.max_wait_seconds:
                raise TransientError(
                    f"tenant {self._tenant}: client-side {api} budget for {key} is spent; "
                    f"next call possible in {wait:.1f} s",
                    retry_after=wait,
                )
            log.debug("tenant %s: waiting %.1f s for the %s budget", self._tenant, wait, key)
            self._clock.sleep(wait)
            waited += wait

    def _transport_retry(self, method: str, err: httpx.RequestError, attempt: int) -> float | None:
        """Back off and resend, unless the request may have reached Microsoft and is not safe."""
        if attempt >= ATTEMPTS or not isinstance(err, httpx.TransportError):
            return None
        if method not in _IDEMPOTENT and not isinstance(err, _NOT_SENT):
            return None  # a POST that timed out may have started an action: the caller re-checks
        return self._backoff(attempt)

    def _status_retry(
        self,
        method: str,
        api: Api,
        key: str,
        response: httpx.Response,
        attempt: int,
    ) -> float | None:
        """Seconds to wait before resending, or None to raise the failure now."""
        status = response.status_code
        # A 429 was refused unprocessed; a 5xx to a POST might have started an action.
        if status != 429 and not (status >= 500 and method in _IDEMPOTENT):
            return None
        retry_after = retry_after_seconds(response, self._clock.now())
        if status == 429:
            self._budgets[api].hold(key, retry_after or 0.0)
        delay = retry_after if retry_after is not None else self._backoff(attempt)
        if attempt >= ATTEMPTS or delay > self._settings.max_wait_seconds:
            return None  # `failure` carries Retry-After, if Microsoft gave one, for the scheduler
        return delay

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter, never longer than max_wait_seconds."""
        base = BACKOFF_BASE * 2.0 ** (attempt - 1)
        return min(self._settings.max_wait_seconds, base * (1 + self._clock.jitter()))

    def _pause(self, why: str, delay: float, attempt: int) -> None:
        log.info("%s; try %d of %d in %.1f s", why, attempt + 1, ATTEMPTS, delay)
        self._clock.sleep(delay)

    def _transport_failure(self, method: str, url: str, err: httpx.RequestError) -> Exception:
        doubtful = method not in _IDEMPOTENT and not isinstance(err, _NOT_SENT)
        error = OutcomeUnknown if doubtful else TransientError
        if isinstance(err, httpx.TimeoutException):
            return error(f"tenant {self._tenant}: {method} {url} timed out")
        return error(f"tenant {self._tenant}: {method} {url} failed: {type(err).__name__}: {err}")

    def _json(self, method: str, response: httpx.Response) -> dict[str, Any]:
        """The JSON object answered; an empty 2xx to a write (a 204) is an empty object, an
        empty one to a read is unreadable (a list or an entity always has a body)."""
        if response.status_code == 206:
            log.warning(
                "tenant %s: partial answer from %s: %s",
                self._tenant,
                response.request.url,
                response.headers.get("Warning", "no Warning header"),
            )
        # A write Microsoft accepted but whose answer we cannot read may have been carried out.
        drift = SchemaDriftError if method in _IDEMPOTENT else OutcomeUnknown
        if not response.content.strip():
            if method in _REREAD:
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {method} {response.request.url} answered "
                    f"{response.status_code} with an empty body"
                )
            return {}
        try:
            data = response.json()
        except ValueError as err:
            raise drift(
                f"tenant {self._tenant}: {method} {response.request.url} answered "
                f"{response.status_code} with a body that is not JSON (malformed or cut short)"
            ) from err
        if not isinstance(data, dict):
            raise drift(
                f"tenant {self._tenant}: {method} {response.request.url} answered JSON "
                f"{type(data).__name__}, expected an object"
            )
        return data

    def _failure(self, method: str, api: Api, response: httpx.Response) -> Exception:
        status = response.status_code
        code, api_message, target = _error_details(response)
        where = f"{method} {response.request.url.copy_with(query=None)}"
        quoted = f"{code or 'no code'}: {api_message or 'no message'}" + (
            f" (target {target})" if target else ""
        )
        message = f"tenant {self._tenant}: {where} answered {status} {quoted}"
        if status == 429 or status >= 500:
            # A 429 was refused unprocessed; a 5xx to a write may have been carried out.
            doubtful = status >= 500 and method not in _IDEMPOTENT
            return (OutcomeUnknown if doubtful else TransientError)(
                message, retry_after=retry_after_seconds(response, self._clock.now())
            )
        if status == 401:
            return AuthError(
                message,
                operator_action=(
                    f"The {api} API refused the token: check {api}_scope and that the app holds "
                    f"application permissions with admin consent in tenant {self._tenant}."
                ),
            )
        if status == 403:
            return AuthError(message, operator_action=_forbidden_action(code, self._tenant))
        if status == 404:
            return ResourceNotFound(message, status=status, code=code, api_message=api_message)
        if 400 <= status < 500:
            return ApiRefused(message, status=status, code=code, api_message=api_message)
        return SchemaDriftError(f"{message} (unexpected status)")


def _whole(body: dict[str, Any]) -> dict[str, Any]:
    return body


def _forbidden_action(code: str, tenant: str) -> str:
    if code == "DisabledFeature":
        return (
            f"Defender reports a disabled feature in tenant {tenant}: Defender for Business is "
            "not fully provisioned or has no onboarded device yet; the company opens "
            "security.microsoft.com > Assets > Devices and onboards a device, then resume."
        )
    if code == "DisallowedOperation":
        return f"Defender does not allow this operation in tenant {tenant}; check the device."
    return (
        f"The app lacks an application permission in tenant {tenant} ({_PERMISSIONS}): add it, "
        "then have a global administrator grant admin consent again."
    )


def _error_details(response: httpx.Response) -> tuple[str, str, str]:
    """Microsoft's error code, message and correlation target from either API's envelope."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "", response.text[:200].strip(), ""
    if not isinstance(error, dict):
        return "", response.text[:200].strip(), ""
    inner = error.get("innerError") or {}
    target = error.get("target") or (inner.get("request-id") if isinstance(inner, dict) else "")
    return str(error.get("code") or ""), str(error.get("message") or ""), str(target or "")
