"""The reports archive (and re-sending), and the CSV downloads of the programme."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
