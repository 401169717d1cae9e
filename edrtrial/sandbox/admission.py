"""Who may call an API endpoint: a live token of the right audience, within its budget."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from edrtrial.sandbox.faults import ApiError
from edrtrial.sandbox.world import SandboxWorld


async def admit(
    world: SandboxWorld,
    request: Request,
    audience: str,
    api: str,
    endpoint: str | None = None,
    roles: tuple[str, ...] = (),
) -> tuple[str, str]:
    """The caller's (tenant id, client id), or ApiError 401 / 403 / 429 with the right headers.

    `api` names the budget charged; the request is counted under `endpoint` (else `api`).
    `roles`: the application permissions of which the token must carry one (403 otherwise).
    """
    try:
        tenant_id, client_id = await run_in_threadpool(
            world.authenticate, request.headers.get("authorization"), audience, roles
        )
    except ApiError as err:
        presented = bool(request.headers.get("authorization"))
        if err.status == 403:
            raise
        err.headers.setdefault(
            "WWW-Authenticate", 'Bearer error="invalid_token"' if presented else "Bearer"
        )
        raise
    retry_after = await run_in_threadpool(world.charge, tenant_id, api, endpoint)
    if retry_after is not None:
        raise ApiError(
            429, "TooManyRequests", "Too many requests.", {"Retry-After": str(retry_after)}
        )
    return tenant_id, client_id
