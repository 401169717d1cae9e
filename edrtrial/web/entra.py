"""Signing in with Microsoft Entra (MSAL's auth-code flow), when `[web.entra]` is set."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
