"""JSON responses with the headers and error envelopes of each real service.

Graph errors carry `innerError` with date and request ids; MDE errors carry `target`, the
correlation id one quotes to Microsoft; Entra's are flat (see auth.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
MDE_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
PLAIN_JSON = "application/json; charset=utf-8"


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(
    payload: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = PLAIN_JSON,
) -> Response:
    """A JSON body with an exact Content-Type (Starlette would otherwise pick its own)."""
    all_headers = {"content-type": content_type, **(headers or {})}
    if content_type != PLAIN_JSON:
        all_headers["OData-Version"] = "4.0"
    return Response(_dump(payload), status_code=status, headers=all_headers)


def graph_ids(request: Request) -> dict[str, str]:
    """Graph's request-id, and the caller's client-request-id echoed (or the same id)."""
    request_id = str(uuid.uuid4())
    return {
        "request-id": request_id,
        "client-request-id": request.headers.get("client-request-id", request_id),
    }


def graph_json(
    request: Request, payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A Graph success response."""
    return json_response(
        payload, status, {**graph_ids(request), **(headers or {})}, GRAPH_CONTENT_TYPE
    )


def graph_error(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[Any] | None = None,
) -> Response:
    """A Graph error in Graph's envelope."""
    ids = graph_ids(request)
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    error["innerError"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": ids["request-id"],
        "client-request-id": ids["client-request-id"],
    }
    return json_response({"error": error}, status, {**ids, **(headers or {})}, GRAPH_CONTENT_TYPE)


def mde_json(payload: Any, status: int = 200) -> Response:
    """An MDE success response."""
    return json_response(payload, status, content_type=MDE_CONTENT_TYPE)


def mde_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An MDE error: {"error": {"code", "message", "target"}}."""
    body = {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}
    return json_response(body, status, headers, MDE_CONTENT_TYPE)


def base_url(request: Request) -> str:
    """scheme://host:port of this request, so links point back where the client came from."""
    return str(request.base_url).rstrip("/")
