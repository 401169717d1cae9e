"""Client secrets of the sandbox's app, kept in the state dir so config can name them.

A multi-tenant app has one secret, good in every tenant that consented to it: the shipped
config's `[programme.app]` says `client_secret = "file:var/sandbox/secrets/app.secret"`.
Each tenant's own secret (`secrets/<tenant_id>.secret`) is accepted as well, in that tenant
only, as configs written before the programme's app named them. The files are created once
and reused, so those references stay valid across restarts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def secret_path(state_dir: Path, tenant_id: str) -> Path:
    """Where a tenant's client secret lives."""
    return state_dir / "secrets" / f"{tenant_id}.secret"


def app_secret_path(state_dir: Path) -> Path:
    """Where the app's one client secret lives (good in every tenant)."""
    return state_dir / "secrets" / "app.secret"


def _ensure(path: Path) -> str:
    existing = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not existing:
        existing = secrets.token_urlsafe(32)
        write_private(path, existing.encode() + b"\n")
    return existing


def ensure_secrets(state_dir: Path, tenant_ids: Iterable[str]) -> dict[str, str]:
    """Each tenant's client secret, created on first use and read back afterwards."""
    return {tenant_id: _ensure(secret_path(state_dir, tenant_id)) for tenant_id in tenant_ids}


def ensure_app_secret(state_dir: Path) -> str:
    """The app's client secret, created on first use and read back afterwards."""
    return _ensure(app_secret_path(state_dir))
