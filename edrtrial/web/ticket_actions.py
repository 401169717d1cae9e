"""The desk's actions on a ticket: acknowledge, assign, note, notify the company, isolate
and release a device, resolve, reopen, close."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
