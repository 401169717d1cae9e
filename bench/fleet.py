"""A config on the sandbox (the programme's app) and a fresh, migrated SQLite file holding
every sandbox tenant's company, imported as `companies import-config` does."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sandbox_process import SandboxInfo

from edrtrial.config import load_companies, load_config
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.programme.companies import import_companies
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

[programme.app]
connector = "defender"
client_id = {client_id}
client_secret = {secret}
authority_host = {base}
graph_base_url = {base}
mde_base_url = {base}
ca_bundle = {ca}
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
    """Write a config on the sandbox pointed at `database` (migrated), and import a company
    for every sandbox tenant into it, connected through the programme's app."""
    app = {
        "client_id": _q(SAMPLE_CLIENT_ID),
        "secret": _q(f"file:{sandbox.app_secret}"),
        "base": _q(sandbox.base_url),
        "ca": _q(sandbox.ca_path),
    }
    head = _HEAD.format(
        database=_q(f"sqlite:///{database}"), outbox=_q(path.parent / "mail"), **app
    )
    path.write_text(head, encoding="utf-8")
    blocks = path.with_name(f"{path.stem}-companies.toml")
    blocks.write_text(
        "".join(
            _COMPANY.format(
                key=_q(tenant.key),
                name=_q(tenant.name),
                domain=tenant.domain,
                start=today - TRIAL_STARTED,
                end=today + TRIAL_LEFT,
                tenant_id=_q(tenant.tenant_id),
                **app,
            )
            for tenant in sandbox.tenants
        ),
        encoding="utf-8",
    )
    config = load_config(path)
    engine = make_engine(config.database_url)
    try:
        with transaction(make_sessions(engine)) as session:
            import_companies(
                session,
                load_companies(blocks),
                config.settings.programme,
                source=str(blocks),
                actor="bench",
                at=datetime.now(UTC),
            )
    finally:
        engine.dispose()
    return path


def fresh_database(path: Path) -> Path:
    """Create and migrate an empty SQLite file."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path
