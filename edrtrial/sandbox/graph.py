"""Microsoft Graph security endpoints: /v1.0/security/alerts_v2 and /v1.0/security/incidents.

Page sizes: alerts default 100 per page, at most 2000; incidents default and at most 50
(`$top=51` gets the 400 Graph really answers). `@odata.nextLink` is absolute and carries an
opaque `$skiptoken`; follow it verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edrtrial.sandbox.admission import admit
from edrtrial.sandbox.auth import (
    GRAPH,
    READ_ALERTS,
    READ_INCIDENTS,
    WRITE_ALERTS,
    WRITE_INCIDENTS,
)
from edrtrial.sandbox.faults import ApiError
from edrtrial.sandbox.graph_data import ALERT_FIELDS, INCIDENT_FIELDS, Page, PageKey
from edrtrial.sandbox.odata import (
    FieldKind,
    ODataError,
    TopExceededError,
    decode_skiptoken,
    encode_skiptoken,
    parse_count,
    parse_filter,
)
from edrtrial.sandbox.responses import base_url, graph_error, graph_json
from edrtrial.sandbox.world import SandboxWorld

ALERTS_TOP = (100, 2000)
INCIDENTS_TOP = (50, 50)
_LIST_OPTIONS = {"$filter", "$top", "$skip", "$skiptoken", "$count", "$expand"}

Handler = Callable[[Request, str], Awaitable[Response]]


class GraphApi:
    """The Graph routes of one sandbox world."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def routes(self) -> list[Route]:
        """Starlette routes for the Graph paths."""
        return [
            Route("/v1.0/security/alerts_v2", self._guard(self.list_alerts, READ_ALERTS)),
            Route("/v1.0/security/alerts_v2/{id}", self._guard(self.get_alert, READ_ALERTS)),
            Route(
                "/v1.0/security/alerts_v2/{id}",
                self._guard(self.patch_alert, WRITE_ALERTS),
                methods=["PATCH"],
            ),
            Route("/v1.0/security/incidents", self._guard(self.list_incidents, READ_INCIDENTS)),
            Route("/v1.0/security/incidents/{id}", self._guard(self.get_incident, READ_INCIDENTS)),
            Route(
                "/v1.0/security/incidents/{id}",
                self._guard(self.patch_incident, WRITE_INCIDENTS),
                methods=["PATCH"],
            ),
            Route(
                "/v1.0/security/incidents/{id}/alerts",
                self._guard(self.incident_alerts, READ_INCIDENTS),
            ),
        ]

    def _guard(
        self, handler: Handler, roles: tuple[str, ...]
    ) -> Callable[[Request], Awaitable[Response]]:
        # Graph charges one budget for all of /security; requests are counted per endpoint.
        # `roles`: the application permissions of which the token must carry one.
        counted_as = f"graph:{handler.__name__}"

        async def endpoint(request: Request) -> Response:
            try:
                tenant_id, _ = await admit(self.world, request, GRAPH, "graph", counted_as, roles)
                return await handler(request, tenant_id)
            except TopExceededError as err:
                return graph_error(request, 400, "", str(err), details=[])
            except ODataError as err:
                return graph_error(request, 400, "BadRequest", str(err))
            except ApiError as err:
                return graph_error(request, err.status, err.code, err.message, err.headers)

        return endpoint

    async def list_alerts(self, request: Request, tenant_id: str) -> Response:
        """GET alerts_v2 with $filter, $top, $skip, $count and keyset $skiptoken paging."""
        query = _ListQuery(request, ALERT_FIELDS, ALERTS_TOP)
        page = await run_in_threadpool(
            self.world.list_alerts, tenant_id, query.clauses, query.after, query.skip, query.top
        )
        return graph_json(request, query.body(page, "security/alerts_v2"))

    async def list_incidents(self, request: Request, tenant_id: str) -> Response:
        """GET incidents, optionally with $expand=alerts."""
        query = _ListQuery(request, INCIDENT_FIELDS, INCIDENTS_TOP)
        expand = _expand(request)
        page = await run_in_threadpool(
            self.world.list_incidents,
            tenant_id,
            query.clauses,
            query.after,
            query.skip,
            query.top,
            expand,
        )
        context = "security/incidents(alerts())" if expand else "security/incidents"
        return graph_json(request, query.body(page, context))

    async def get_alert(self, request: Request, tenant_id: str) -> Response:
        """GET one alert."""
        alert = await run_in_threadpool(self.world.get_alert, tenant_id, request.path_params["id"])
        return graph_json(request, _entity(request, "security/alerts_v2/$entity", alert))

    async def patch_alert(self, request: Request, tenant_id: str) -> Response:
        """PATCH status / classification / determination / assignedTo of an alert."""
        changes = await _json_body(request)
        alert = await run_in_threadpool(
            self.world.update_alert, tenant_id, request.path_params["id"], changes
        )
        return graph_json(request, _entity(request, "security/alerts_v2/$entity", alert))

    async def get_incident(self, request: Request, tenant_id: str) -> Response:
        """GET one incident, optionally with $expand=alerts."""
        expand = _expand(request)
        incident = await run_in_threadpool(
            self.world.get_incident, tenant_id, request.path_params["id"], expand
        )
        return graph_json(request, _entity(request, "security/incidents/$entity", incident))

    async def patch_incident(self, request: Request, tenant_id: str) -> Response:
        """PATCH status / classification / determination / assignedTo / customTags."""
        changes = await _json_body(request)
        incident = await run_in_threadpool(
            self.world.update_incident, tenant_id, request.path_params["id"], changes
        )
        return graph_json(request, _entity(request, "security/incidents/$entity", incident))

    async def incident_alerts(self, request: Request, tenant_id: str) -> Response:
        """GET the alerts of one incident (the fallback when $expand=alerts fails)."""
        incident = await run_in_threadpool(
            self.world.get_incident, tenant_id, request.path_params["id"], True
        )
        context = f"{base_url(request)}/v1.0/$metadata#security/alerts_v2"
        return graph_json(request, {"@odata.context": context, "value": incident["alerts"]})


class _ListQuery:
    """The OData options of a Graph list request, checked."""

    def __init__(
        self, request: Request, fields: dict[str, FieldKind], top: tuple[int, int]
    ) -> None:
        params = request.query_params
        for name in params:
            if name.startswith("$") and name not in _LIST_OPTIONS:
                raise ODataError(f"Query option '{name}' is not supported.")
        self.request = request
        self.filter = params.get("$filter")
        self.clauses = parse_filter(self.filter, fields)
        self.top = parse_count(params.get("$top"), "$top", top[0], top[1])
        self.skip = parse_count(params.get("$skip"), "$skip", 0)
        token = params.get("$skiptoken")
        self.after: PageKey | None = decode_skiptoken(token) if token else None
        self.count = params.get("$count", "").lower() == "true"

    def body(self, page: Page, context: str) -> dict[str, Any]:
        """The list response: context, count if asked, nextLink if more, then the items."""
        body: dict[str, Any] = {
            "@odata.context": f"{base_url(self.request)}/v1.0/$metadata#{context}"
        }
        if self.count:
            body["@odata.count"] = page.count
        if page.next_key is not None:
            body["@odata.nextLink"] = self._next_link(page.next_key)
        body["value"] = page.items
        return body

    def _next_link(self, key: PageKey) -> str:
        params = self.request.query_params
        kept = [(k, params[k]) for k in ("$filter", "$top", "$count", "$expand") if k in params]
        kept.append(("$skiptoken", encode_skiptoken(*key)))
        query = "&".join(f"{k}={quote(v, safe=':,()')}" for k, v in kept)
        return f"{base_url(self.request)}{self.request.url.path}?{query}"


def _expand(request: Request) -> bool:
    value = request.query_params.get("$expand")
    if value is None:
        return False
    if value.strip().lower() != "alerts":
        raise ODataError(f"Expanding '{value}' is not supported; only $expand=alerts is.")
    return True


def _entity(request: Request, context: str, entity: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.context": f"{base_url(request)}/v1.0/$metadata#{context}", **entity}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as err:
        raise ApiError(400, "BadRequest", "The request body is not valid JSON.") from err
