"""Control endpoints under /sandbox/ for tests and operator training (no auth, loopback only).

A tenant is named by its id or its key ("sakura-seisakusho") in every body.

    GET  /sandbox/state     tenants with counts: alerts, incidents, devices, isolated and
                            offboarded devices, machine actions per device and type,
                            calls in the last minute per API; plus the settings
    GET  /sandbox/kinds     the alert kinds {key: {title, severity, category, mitre}}
    POST /sandbox/alerts    {"tenant", "kind", "count"=1, "incident_id"=null|"new"|id,
                             "device_id"?, "severity"?, "text"?: {"title", "description",
                             "file_name", "command_line", "url"}} -> {"alert_ids": [...]}
    POST /sandbox/devices   {"tenant", "count"=1, "os_platform"="Windows11",
                             "detection_test"=true} -> {"device_ids": [...]}
    POST /sandbox/clear     {"tenant"}: no devices, alerts or actions (MDE then answers 404)
    POST /sandbox/consent   {"tenant", "granted": bool}; revoking also ends live tokens,
                            granting grants every permission the app requests
    GET  /sandbox/permissions?tenant=…  -> {"tenant_id", "permissions": [...]}
    POST /sandbox/permissions  {"tenant", "permission": "Machine.Isolate", "granted": bool}:
                            withdraw (or grant again) one application permission in the
                            tenant; its live tokens end, the next carry the new `roles`
    POST /sandbox/tokens/expire  {"tenant"?} -> {"expired": n}
    POST /sandbox/tokens/issued-for  {"tenant", "issued_for": id or key | null}: sign-ins at
                            the tenant's authority get tokens of another tenant (null: its own)
    GET|POST /sandbox/settings  {"latency_seconds", "graph_per_minute", "mde_per_minute",
                             "mde_per_hour" (null = unlimited), "action_seconds",
                             "action_outcome": "Succeeded"|"Failed"|"TimeOut",
                             "action_fault": "none"|"error_after_record"|
                             "timeout_after_record"|"error_before_record",
                             "action_fault_repeat": "once"|"always"};
                             omitted keys stay as they are; answers the current settings
    POST /sandbox/tick      let time pass now -> {"events": n}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edrtrial.sandbox.actions import OUTCOMES
from edrtrial.sandbox.catalogue import ALERT_KINDS
from edrtrial.sandbox.faults import ActionFault
from edrtrial.sandbox.responses import json_response
from edrtrial.sandbox.world import SandboxWorld

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_BUDGET_KEYS = ("graph_per_minute", "mde_per_minute", "mde_per_hour")
_ACTION_KEYS = ("action_seconds", "action_outcome", "action_fault", "action_fault_repeat")

Handler = Callable[[dict[str, Any]], Any]


class ControlApi:
    """The /sandbox/ routes of one sandbox world."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def routes(self) -> list[Route]:
        """Starlette routes for the control paths."""
        post = ["POST"]
        return [
            Route("/sandbox/state", self._wrap(lambda _: self.world.summary())),
            Route("/sandbox/kinds", self._wrap(lambda _: _kinds())),
            Route("/sandbox/alerts", self._wrap(self._add_alerts), methods=post),
            Route("/sandbox/devices", self._wrap(self._add_devices), methods=post),
            Route("/sandbox/clear", self._wrap(self._clear), methods=post),
            Route("/sandbox/consent", self._wrap(self._consent), methods=post),
            Route("/sandbox/permissions", self._wrap(self._permissions), methods=["GET", *post]),
            Route("/sandbox/tokens/expire", self._wrap(self._expire), methods=post),
            Route("/sandbox/tokens/issued-for", self._wrap(self._issued_for), methods=post),
            Route("/sandbox/settings", self._wrap(self._settings), methods=["GET", "POST"]),
            Route(
                "/sandbox/tick", self._wrap(lambda _: {"events": self.world.tick()}), methods=post
            ),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.client is None or request.client.host not in _LOOPBACK:
                return json_response({"error": "control endpoints answer loopback only"}, 403)
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else dict(request.query_params)
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                result = await run_in_threadpool(handler, body)
            except LookupError as err:
                return json_response({"error": str(err.args[0] if err.args else err)}, 404)
            except (ValueError, TypeError) as err:
                return json_response({"error": str(err)}, 400)
            return json_response(result)

        return endpoint

    def _tenant(self, body: dict[str, Any]) -> str:
        ref = str(body.get("tenant") or body.get("tenant_id") or "")
        if not ref:
            raise ValueError('name the tenant: {"tenant": id or key}')
        for info in self.world.tenants:
            if ref.lower() in (info.tenant_id, info.key):
                return info.tenant_id
        raise LookupError(f"no sandbox tenant {ref}")

    def _add_alerts(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = self.world.add_alerts(
            self._tenant(body),
            str(body.get("kind", "")),
            int(body.get("count", 1)),
            incident_id=_optional_str(body, "incident_id"),
            device_id=_optional_str(body, "device_id"),
            severity=_optional_str(body, "severity"),
            text=_text(body),
        )
        return {"alert_ids": ids}

    def _add_devices(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = self.world.add_devices(
            self._tenant(body),
            int(body.get("count", 1)),
            str(body.get("os_platform", "Windows11")),
            bool(body.get("detection_test", True)),
        )
        return {"device_ids": ids}

    def _clear(self, body: dict[str, Any]) -> dict[str, Any]:
        tenant_id = self._tenant(body)
        self.world.clear_tenant(tenant_id)
        return {"cleared": tenant_id}

    def _consent(self, body: dict[str, Any]) -> dict[str, Any]:
        granted = body.get("granted")
        if not isinstance(granted, bool):
            raise ValueError('"granted" must be true or false')
        tenant_id = self._tenant(body)
        self.world.set_consent(tenant_id, granted)
        return {"tenant_id": tenant_id, "consent": granted}

    def _permissions(self, body: dict[str, Any]) -> dict[str, Any]:
        tenant_id = self._tenant(body)
        if "permission" in body:
            granted = body.get("granted")
            if not isinstance(granted, bool):
                raise ValueError('"granted" must be true or false')
            roles = self.world.set_permission(tenant_id, str(body["permission"]), granted)
        else:
            roles = self.world.permissions(tenant_id)
        return {"tenant_id": tenant_id, "permissions": roles}

    def _expire(self, body: dict[str, Any]) -> dict[str, Any]:
        tenant_id = self._tenant(body) if ("tenant" in body or "tenant_id" in body) else None
        return {"expired": self.world.expire_tokens(tenant_id)}

    def _issued_for(self, body: dict[str, Any]) -> dict[str, Any]:
        tenant_id = self._tenant(body)
        other = body.get("issued_for")
        issued_for = None if other is None else self._tenant({"tenant": other})
        self.world.issue_tokens_for(tenant_id, issued_for)
        return {"tenant_id": tenant_id, "issued_for": issued_for or tenant_id}

    def _settings(self, body: dict[str, Any]) -> dict[str, Any]:
        known = {*_BUDGET_KEYS, *_ACTION_KEYS, "latency_seconds"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        # Read every value before changing anything, so a bad one changes nothing.
        budgets = {key: _budget(body[key]) for key in _BUDGET_KEYS if key in body}
        latency = _seconds(body, "latency_seconds")
        action_seconds = _seconds(body, "action_seconds")
        outcome = body.get("action_outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"action_outcome must be one of {', '.join(OUTCOMES)}")
        fault = None
        if "action_fault" in body or "action_fault_repeat" in body:
            current = self.world.action_fault
            fault = ActionFault(
                str(body.get("action_fault", current.mode)),
                str(body.get("action_fault_repeat", current.repeat)),
            )
        if budgets:
            self.world.update_budgets(**budgets)
        if latency is not None:
            self.world.set_latency(latency)
        if action_seconds is not None:
            self.world.set_action_seconds(action_seconds)
        if outcome is not None:
            self.world.set_action_outcome(outcome)
        if fault is not None:
            self.world.set_action_fault(fault.mode, fault.repeat)
        return self.world.settings()


def _kinds() -> dict[str, Any]:
    return {
        key: {
            "title": k.title,
            "severity": k.severity,
            "category": k.category,
            "mitre": list(k.mitre),
            "platforms": sorted(k.platforms),
        }
        for key, k in ALERT_KINDS.items()
    }


def _text(body: dict[str, Any]) -> dict[str, str] | None:
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise ValueError("text must be an object of an alert's texts")
    return {str(k): str(v) for k, v in text.items()}


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return None if value is None else str(value)


def _budget(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a budget is a whole number of calls (at least 1), or null for unlimited")
    return value


def _seconds(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a number of seconds, not negative")
    return float(value)
