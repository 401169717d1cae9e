"""Config files for tests: the sandbox's three sample companies, with trials dated around the
test's today, written as TOML from a dict (not edited out of config.example.toml).

Companies live in the store: the config holds the programme's app registration on the
test's sandbox, and `write_config` imports the sample companies into the store (migrating it
first) through the product's own `companies import-config` code. A test of an unmigrated or
missing store passes `companies=0`.

The sample programme, relative to today (by the clock the test runs on: see clock.py):

- sakura-seisakusho: in its trial (day 61 of 91), undecided; Japanese contact.
- midori-shoji: its trial ended undecided 10 days ago, before last week began, so it gets no
  weekly report and each of its devices gets one offboarding task.
- aozora-design: in its trial (day 51 of 92), continuing; auto-isolation; English contact.

The sandbox makes each device 10 to 40 days before its clock and each alert within the last
fortnight, so every sample device was onboarded during its company's trial. test_config.py
checks that the shipped config.example.toml itself loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from edrtrial.config import load_companies, load_config
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.programme.companies import Imported, import_companies
from edrtrial.sandbox import SAMPLE_CLIENT_ID, SAMPLE_TENANTS, SandboxServer, SandboxWorld
from edrtrial.timeutil import jst_date

#: Per sample company: trial start and end in days from today, decision, other settings.
SAMPLE_PROGRAMME: tuple[dict[str, Any], ...] = (
    {
        "contact_name": "山田 太郎",
        "contact_email": "it@sakura.example.jp",
        "language": "ja",
        "planned_seats": 15,
        "auto_isolation": False,
        "trial": (-60, 30, "undecided"),
    },
    {
        "contact_name": "佐藤 花子",
        "contact_email": "soumu@midori.example.jp",
        "language": "ja",
        "planned_seats": 10,
        "trial": (-101, -10, "undecided"),
    },
    {
        "contact_name": "Emily Clark",
        "contact_email": "office@aozora.example.jp",
        "language": "en",
        "planned_seats": 6,
        "auto_isolation": True,
        "trial": (-50, 41, "continue"),
    },
)


def sample_world(seed: int = 5, *, actions_at_once: bool = False) -> SandboxWorld:
    """The sample programme's three tenants, an alert an hour; made at the clock's now, so
    take the `now` fixture first. `actions_at_once`: machine actions succeed immediately."""
    world = SandboxWorld(seed=seed, tenants=3, alert_interval_seconds=3600)
    if actions_at_once:
        world.set_action_seconds(0)
    return world


@contextmanager
def serving(world: SandboxWorld, state_dir: Path) -> Iterator[SandboxServer]:
    """The sandbox's HTTPS server for `world` on a free loopback port, for one test."""
    server = SandboxServer(world, host="127.0.0.1", port=0, state_dir=state_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def app_block(
    base_url: str, state_dir: Path | str, connection: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The programme's app registration on the sandbox at `base_url` (one secret, every
    tenant), with `connection`'s extra settings (`write_back`, budgets, ...)."""
    return {
        "connector": "defender",
        "client_id": SAMPLE_CLIENT_ID,
        "client_secret": f"file:{state_dir}/secrets/app.secret",
        "authority_host": base_url,
        "graph_base_url": base_url,
        "mde_base_url": base_url,
        "ca_bundle": f"{state_dir}/ca.pem",
        **(connection or {}),
    }


def sample_companies(
    data: Mapping[str, Any], count: int = 3, *, today: date | None = None
) -> list[dict[str, Any]]:
    """The first `count` sample companies as `[[companies]]` blocks for the config `data`:
    each connected through its programme app (so the store keeps no connection of its own).

    `today` defaults to the Tokyo date of the clock the test runs on (the `now` fixture's).
    """
    today = today or jst_date(datetime.now(UTC))
    app = data["programme"]["app"]
    result = []
    for tenant, sample in zip(SAMPLE_TENANTS[:count], SAMPLE_PROGRAMME, strict=False):
        start, end, decision = sample["trial"]
        company = {"key": tenant.key, "name": tenant.name, "seat_cap": 300}
        company |= {k: v for k, v in sample.items() if k != "trial"}
        company["trial"] = {
            "start": today + timedelta(days=start),
            "end": today + timedelta(days=end),
            "decision": decision,
        }
        company["connection"] = {**app, "tenant_id": tenant.tenant_id}
        result.append(company)
    return result


def settings(
    database_url: str,
    *,
    base_url: str = "https://127.0.0.1:8443",
    state_dir: Path | str = "var/sandbox",
    sandbox_port: int = 8443,
    mail_dir: Path | str = "var/mail",
    connection: Mapping[str, Any] | None = None,
    playbooks: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole config as a dict: the example's settings and the programme's app on the
    sandbox (no companies: `write_config` puts them in the store)."""
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "sandbox": {
            "host": "127.0.0.1",
            "port": sandbox_port,
            "state_dir": str(state_dir),
            "alert_interval_seconds": 45,
            "seed": 7,
            "tenants": 3,
        },
        "mail": {
            "from_address": "edr-trial@example.jp",
            "from_name": "EDR体験 運営事務局",
            "outbox_dir": str(mail_dir),
            "max_attempts": 8,
        },
        "desk": {
            "name": "EDR体験 サポートデスク",
            "email": "desk@example.jp",
            "phone": "03-0000-0000",
            "hours": "平日 9:00〜17:00",
            "incident_desk_phone": "03-0000-0001",
            "reopen_days": 14,
            "close_after_days": 7,
        },
        "calendar": {
            "opens": "09:00",
            "closes": "17:00",
            "year_end_closure": ["12-29", "01-03"],
            "closed_days": [],
        },
        "sla": {
            "acknowledge_minutes": {"P1": 30, "P2": 120, "P3": 480, "P4": 2400},
            "around_the_clock": ["P1", "P2"],
        },
        "schedules": {
            "poll_seconds": 30,
            "inventory_minutes": 30,
            "outbox_seconds": 10,
            "desk_seconds": 30,
            "parallel_tenants": 8,
            "weekly_report": "mon 09:00",
            "trial_lifecycle": "06:00",
        },
        "logging": {"level": "INFO", "json_lines": False},
        "programme": {"app": app_block(base_url, state_dir, connection)},
        # `serve` runs the console beside the scheduler: on any free port, so tests never meet.
        "web": {"port": 0},
    }
    if playbooks:
        data["playbooks"] = list(playbooks)
    return data


def write_config(
    path: Path,
    data: Mapping[str, Any],
    *,
    companies: int | Sequence[Mapping[str, Any]] = 3,
    at: datetime | None = None,
) -> Path:
    """Write `data` as a TOML config file at `path`, and put `companies` in its store: the
    first N sample companies, or these `[[companies]]` blocks (none: the store is not even
    migrated). Importing is idempotent, so rewriting a config changes no stored company."""
    path.write_text(to_toml(data), encoding="utf-8")
    if isinstance(companies, int):
        blocks = sample_companies(data, companies) if companies else []
    else:
        blocks = list(companies)
    if blocks:
        import_into_store(path, blocks, at=at)
    return path


def import_into_store(
    config: Path, blocks: Sequence[Mapping[str, Any]], *, at: datetime | None = None
) -> list[Imported]:
    """Migrate the config's store and import `blocks` as `companies import-config` does:
    written as a file of `[[companies]]` beside the config, read and validated by the
    product's loader, imported at `at` (default: the test's now)."""
    file = config.with_name(f"{config.stem}-companies.toml")
    file.write_text(to_toml({"companies": list(blocks)}), encoding="utf-8")
    loaded = load_config(config)
    engine = make_engine(loaded.database_url)
    try:
        upgrade(engine)
        with transaction(make_sessions(engine)) as session:
            done = import_companies(
                session,
                load_companies(file),
                loaded.settings.programme,
                source=str(file),
                actor="cli:test",
                at=at or datetime.now(UTC),
            )
    finally:
        engine.dispose()
    refused = [f"{d.key}: {d.detail}" for d in done if d.outcome == "refused"]
    assert not refused, refused
    return done


def sandbox_config(
    tmp_path: Path,
    server: SandboxServer,
    database_url: str,
    *,
    companies: int = 3,
    connection: Mapping[str, Any] | None = None,
) -> Path:
    """tmp_path/config.toml: the programme's app on this sandbox, its store holding the
    first `companies` sample companies, and the mail folder."""
    data = settings(
        database_url,
        base_url=server.base_url,
        state_dir=server.state_dir,
        mail_dir=tmp_path / "mail",
        connection=connection,
    )
    return write_config(tmp_path / "config.toml", data, companies=companies)


# --- a small TOML writer: tables, arrays of tables, strings, numbers, booleans, dates, lists


def to_toml(data: Mapping[str, Any]) -> str:
    """`data` as TOML: nested dicts become tables, lists of dicts arrays of tables."""
    lines: list[str] = []
    _table(lines, (), data)
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_table(v) for v in value)


def _table(lines: list[str], name: tuple[str, ...], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if not (_is_table(value) or _is_table_array(value)):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        if _is_table(value):
            lines.extend(["", f"[{'.'.join(map(_key, (*name, key)))}]"])
            _table(lines, (*name, key), value)
        elif _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(map(_key, (*name, key)))}]]"])
                _table(lines, (*name, key), item)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")
