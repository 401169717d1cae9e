"""A config for every sandbox tenant (one company each) and a fresh, migrated SQLite file."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from sandbox_process import SandboxInfo

from edrtrial.db import make_engine, upgrade
from edrtrial.sandbox import SAMPLE_CLIENT_ID

# The sandbox's backlog spans the last 30 days: a trial that started 40 days ago covers it,
# and one that ends in 50 days plans no offboarding.
TRIAL_STARTED = timedelta(days=40)
TRIAL_LEFT = timedelta(days=50)

_HEAD = """\
[database]
url = {database}

[mail]
from_address = "edr-trial@example.jp"
outbox_dir = {outbox}

[desk]
name = "bench desk"
email = "desk@example.jp"

[logging]
level = "WARNING"
"""

_COMPANY = """
[[companies]]
key = {key}
name = {name}
contact_email = "it@{domain}"
planned_seats = 10
trial = {{ start = {start}, end = {end}, decision = "undecided" }}

[companies.connection]
connector = "defender"
tenant_id = {tenant_id}
client_id = {client_id}
client_secret = {secret}
authority_host = {base}
graph_base_url = {base}
mde_base_url = {base}
ca_bundle = {ca}
"""


def _q(value: object) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(str(value), ensure_ascii=False)


def write_config(path: Path, sandbox: SandboxInfo, database: Path, today: date) -> Path:
    """Write a config naming every sandbox tenant, pointed at `database`."""
    parts = [_HEAD.format(database=_q(f"sqlite:///{database}"), outbox=_q(path.parent / "mail"))]
    for tenant in sandbox.tenants:
        parts.append(
            _COMPANY.format(
                key=_q(tenant.key),
                name=_q(tenant.name),
                domain=tenant.domain,
                start=today - TRIAL_STARTED,
                end=today + TRIAL_LEFT,
                tenant_id=_q(tenant.tenant_id),
                client_id=_q(SAMPLE_CLIENT_ID),
                secret=_q(f"file:{sandbox.secrets[tenant.tenant_id]}"),
                base=_q(sandbox.base_url),
                ca=_q(sandbox.ca_path),
            )
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


def fresh_database(path: Path) -> Path:
    """Create and migrate an empty SQLite file."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path
