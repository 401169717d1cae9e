"""The desk's pages: the queue across all companies and each ticket, with its actions."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
