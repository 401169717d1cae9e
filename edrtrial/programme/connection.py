"""How the service reaches a company's tenant: the programme's app, or the tenant's own.

Every Defender tenant is reached through the programme's one multi-tenant app registration
(`[programme.app]` in the config), with the tenant id recorded in the store when its
administrator consented. A tenant may carry its own connection block instead (the CyCraft
edition's per-company key, or a company brought from an old config file): secrets in it
are references, never values, so the store holds nothing a reader could sign in with.
"""

from __future__ import annotations

from typing import Any

from edrtrial.config import ProgrammeConfig
from edrtrial.errors import ConfigError
from edrtrial.models import Tenant


def connection_settings(programme: ProgrammeConfig, tenant: Tenant) -> dict[str, Any]:
    """The connector settings for `tenant`: its own block, else the app's with its tenant id.

    Raises ConfigError (naming the company's tenant) when neither is there, or when its
    credentials were dropped at the end of its programme.
    """
    if tenant.credentials_dropped_at is not None:
        raise ConfigError(
            f"tenant {tenant.external_id}: its credentials were dropped on "
            f"{tenant.credentials_dropped_at:%Y-%m-%d} when its programme ended"
        )
    own = dict(tenant.connection or {})
    if own:
        own.setdefault("tenant_id", tenant.external_id)
        return own
    if programme.app is None:
        raise ConfigError(
            f"tenant {tenant.external_id}: no [programme.app] in the config and no connection "
            "of its own; configure the programme's app registration"
        )
    return programme.app.connection(tenant.external_id)
