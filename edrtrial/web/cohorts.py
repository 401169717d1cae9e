"""The secretariat's cohort dashboard: seats, the trial calendar, offboarding, tenants."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
