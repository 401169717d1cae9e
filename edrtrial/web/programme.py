"""The secretariat's pages: applications, each company's journey, cohorts, reports."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
