"""The administrator's pages: people and roles, playbooks, the audit log, the status."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
