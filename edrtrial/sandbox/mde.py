"""Defender for Endpoint endpoints: /api/machines, machine actions, /api/machineactions.

Every API has its own budget (100/min, 1,500/h per tenant), named after the docs page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edrtrial.sandbox.actions import ACTION_TYPES
from edrtrial.sandbox.admission import admit
from edrtrial.sandbox.auth import MDE, READ_MACHINES
from edrtrial.sandbox.faults import TIMEOUT_FAULT_SECONDS, ApiError
from edrtrial.sandbox.mde_data import ACTION_FIELDS, MACHINE_FIELDS
from edrtrial.sandbox.odata import Clause, FieldKind, ODataError, parse_count, parse_filter
from edrtrial.sandbox.responses import base_url, mde_error, mde_json
from edrtrial.sandbox.world import SandboxWorld

MAX_TOP = 10_000
#: The application permission each machine action needs (defender-api.md §1.4).
ACTION_ROLES = {
    "isolate": ("Machine.Isolate",),
    "unisolate": ("Machine.Isolate",),
    "runAntiVirusScan": ("Machine.Scan",),
    "offboard": ("Machine.Offboard",),
}
_LIST_OPTIONS = {"$filter", "$top", "$skip"}

Handler = Callable[[Request, str, str], Awaitable[Response]]


class MdeApi:
    """The MDE routes of one sandbox world."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def routes(self) -> list[Route]:
        """Starlette routes for the MDE paths."""
        routes = [
            Route("/api/machines", self._guard("list_machines", self.list_machines)),
            Route("/api/machines/{id}", self._guard("get_machine", self.get_machine)),
            Route("/api/machineactions", self._guard("list_machineactions", self.list_actions)),
            Route("/api/machineactions/{id}", self._guard("get_machineaction", self.get_action)),
        ]
        for verb in ACTION_TYPES:
            routes.append(
                Route(
                    f"/api/machines/{{id}}/{verb}",
                    self._guard(verb, self._action(verb), ACTION_ROLES[verb]),
                    methods=["POST"],
                )
            )
        return routes

    def _guard(
        self, api: str, handler: Handler, roles: tuple[str, ...] = READ_MACHINES
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                tenant_id, client_id = await admit(
                    self.world, request, MDE, f"mde:{api}", roles=roles
                )
                return await handler(request, tenant_id, client_id)
            except ODataError as err:
                return mde_error(400, "ODataError", str(err))
            except ApiError as err:
                return mde_error(err.status, err.code, err.message, err.headers)

        return endpoint

    async def list_machines(self, request: Request, tenant_id: str, _: str) -> Response:
        """GET /api/machines with $filter, $top (max 10,000) and $skip; no nextLink."""
        clauses, skip, top = _list_query(request, MACHINE_FIELDS)
        rows = await run_in_threadpool(self.world.list_machines, tenant_id, clauses, skip, top)
        return mde_json(_listing(request, "Machines", rows))

    async def get_machine(self, request: Request, tenant_id: str, _: str) -> Response:
        """GET /api/machines/{id or computer name}."""
        machine = await run_in_threadpool(
            self.world.get_machine, tenant_id, request.path_params["id"]
        )
        return mde_json(_entity(request, "Machines", machine))

    async def list_actions(self, request: Request, tenant_id: str, _: str) -> Response:
        """GET /api/machineactions, newest first."""
        clauses, skip, top = _list_query(request, ACTION_FIELDS)
        rows = await run_in_threadpool(self.world.list_actions, tenant_id, clauses, skip, top)
        return mde_json(_listing(request, "MachineActions", rows))

    async def get_action(self, request: Request, tenant_id: str, _: str) -> Response:
        """GET /api/machineactions/{guid}."""
        action = await run_in_threadpool(
            self.world.get_action, tenant_id, request.path_params["id"]
        )
        return mde_json(_entity(request, "MachineActions", action))

    def _action(self, verb: str) -> Handler:
        async def handler(request: Request, tenant_id: str, client_id: str) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError as err:
                raise ApiError(400, "InvalidRequestBody", "Request body is incorrect") from err
            if self.world.action_fault.mode == "error_before_record":
                self.world.take_action_fault()  # a gateway failed before Microsoft saw it
                return mde_error(502, "BadGateway", "The gateway did not reach the service")
            action = await run_in_threadpool(
                self.world.start_action,
                tenant_id,
                request.path_params["id"],
                verb,
                body,
                client_id,
            )
            fault = self.world.take_action_fault()  # the action exists whatever is answered
            if fault == "timeout_after_record":
                await _hold_back(request)
                return mde_error(504, "GatewayTimeout", "The operation timed out")
            if fault == "error_after_record":
                return mde_error(
                    503, "ServiceUnavailable", "The service is temporarily unavailable"
                )
            return mde_json(_entity(request, "MachineActions", action), 201)

        return handler


async def _hold_back(request: Request) -> None:
    """Keep the client waiting for the fault's time, or until it has given up and left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_FAULT_SECONDS
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.1)


def _list_query(request: Request, fields: dict[str, FieldKind]) -> tuple[list[Clause], int, int]:
    params = request.query_params
    for name in params:
        if name.startswith("$") and name not in _LIST_OPTIONS:
            raise ODataError(f"Query option '{name}' is not supported.")
    clauses = parse_filter(params.get("$filter"), fields)
    return (
        clauses,
        parse_count(params.get("$skip"), "$skip", 0),
        parse_count(params.get("$top"), "$top", MAX_TOP, MAX_TOP),
    )


def _listing(request: Request, entity_set: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@odata.context": f"{base_url(request)}/api/$metadata#{entity_set}", "value": rows}


def _entity(request: Request, entity_set: str, entity: dict[str, Any]) -> dict[str, Any]:
    context = f"{base_url(request)}/api/$metadata#{entity_set}/$entity"
    return {"@odata.context": context, **entity}
