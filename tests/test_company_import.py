"""Companies live in the store: `companies import-config` moves an old config file's
`[[companies]]` blocks in once (audited, idempotent, one tenant per company, secrets kept as
references), and a config still carrying blocks is warned about and otherwise ignored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import AuditEvent, Base, Cohort, Company, Tenant, Trial
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date

from sandbox_config import SAMPLE_TENANTS, sample_companies, settings, to_toml, write_config

SAKURA = SAMPLE_TENANTS[0].tenant_id


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


@pytest.fixture
def config(tmp_path: Path, now, database_url: str) -> Path:
    """A config with the programme's app and an empty, migrated store."""
    path = write_config(tmp_path / "config.toml", settings(database_url), companies=0)
    assert cli(path, "db", "upgrade").exit_code == 0
    return path


@pytest.fixture
def sessions(database_url: str, config: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_sessions(engine)
    engine.dispose()


#: The old example's sample trials: started so many days ago, 92 days long, decision.
OLD_TRIALS = ((70, "undecided"), (110, "undecided"), (40, "continue"))


def old_config(tmp_path: Path) -> Path:
    """A config file of before: settings and three [[companies]] blocks, each with its own
    connection (a client secret per tenant, as a file reference) and relative trial dates."""
    data = settings("sqlite:///unused.db")
    blocks = sample_companies(data)
    for block, (days_ago, decision) in zip(blocks, OLD_TRIALS, strict=True):
        tenant = block["connection"]["tenant_id"]
        block["connection"]["client_secret"] = f"file:var/sandbox/secrets/{tenant}.secret"
        block["trial"] = {"started_days_ago": days_ago, "days": 92, "decision": decision}
    del data["programme"]
    path = tmp_path / "old.toml"
    path.write_text(to_toml(data | {"companies": blocks}), encoding="utf-8")
    return path


def companies_file(tmp_path: Path, blocks: list[dict[str, Any]], name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml({"companies": blocks}), encoding="utf-8")
    return path


def test_an_old_config_is_imported_once_with_journeys_where_the_trials_stand(
    tmp_path, now, config, sessions
):
    old = old_config(tmp_path)
    first = cli(config, "companies", "import-config", str(old))
    assert first.exit_code == 0, first.output
    assert "sakura-seisakusho: imported, 体験中 (in_trial)" in first.output
    assert "midori-shoji: imported, アンインストール中 (offboarding)" in first.output
    assert "aozora-design: imported, 体験中 (in_trial)" in first.output
    assert "3 imported, 0 already in the store, 0 refused" in first.output

    today = jst_date(now)
    with sessions() as session:
        rows = {
            c.key: (c.state, cohort, t.starts_on, t.ends_on, t.decision)
            for c, cohort, t in session.execute(
                select(Company, Cohort.key, Trial)
                .join(Cohort, Company.cohort_id == Cohort.id)
                .join(Trial, Trial.company_id == Company.id)
            )
        }
        tenants = {t.external_id: t for t in session.scalars(select(Tenant))}
        imported = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.imported")
        ).all()
        steps = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == "company:midori-shoji")
        ).all()
    # Relative sample dates are resolved on the import day, and stay.
    assert rows["sakura-seisakusho"] == (
        "in_trial",
        "imported",
        today - timedelta(days=70),
        today + timedelta(days=21),
        "undecided",
    )
    assert rows["midori-shoji"][0] == "offboarding"
    assert rows["aozora-design"][0::4] == ("in_trial", "continue")
    assert all(t.consented_at is not None and t.verified_at is not None for t in tenants.values())
    # Each block has a secret of its own, not the programme app's: kept, as its reference.
    assert tenants[SAKURA].connection["client_secret"] == (
        f"file:var/sandbox/secrets/{SAKURA}.secret"
    )
    assert [e.detail["source"] for e in imported] == [str(old)] * 3
    assert all(e.actor.startswith("cli:") for e in imported)
    assert steps[0] == "company.imported"
    assert steps[1:] == [
        "company.judge_eligible",
        "company.call",
        "company.diagnose",
        "company.admit",
        "company.consent",
        "company.verify",
        "company.start",
        "company.near_end",
        "company.offboard",
    ]

    counts = _counts(sessions)
    again = cli(config, "companies", "import-config", str(old))
    assert again.exit_code == 0, again.output
    assert "sakura-seisakusho: already in the store: left as it is" in again.output
    assert "0 imported, 3 already in the store, 0 refused" in again.output
    assert _counts(sessions) == counts  # importing the same file twice changes nothing

    listed = cli(config, "companies", "list", "--wide")
    assert listed.exit_code == 0, listed.output
    assert "midori-shoji" in listed.output and "アンインストール中 (offboarding)" in listed.output


def _counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            table.name: len(session.execute(select(table)).all())
            for table in Base.metadata.sorted_tables
        }


@pytest.mark.parametrize(
    "spelling", [SAKURA.upper(), "{" + SAKURA + "}", "5F1B2C3D-4E5F-4a6b-8c7d-0e1f2a3b4c01"]
)
def test_a_tenant_another_company_holds_is_refused_in_any_spelling(
    tmp_path, config, sessions, spelling
):
    data = settings("sqlite:///unused.db")
    assert (
        cli(
            config,
            "companies",
            "import-config",
            str(companies_file(tmp_path, sample_companies(data, 1))),
        ).exit_code
        == 0
    )
    other = sample_companies(data, 2)[1]
    other["connection"]["tenant_id"] = spelling
    result = cli(
        config, "companies", "import-config", str(companies_file(tmp_path, [other], "o.toml"))
    )
    assert result.exit_code == 1, result.output
    assert (
        f"midori-shoji: refused: tenant {SAKURA} is held by company 'sakura-seisakusho'; one "
        "tenant belongs to one company"
    ) in " ".join(result.output.split())
    with sessions() as session:
        assert session.scalars(select(Company.key)).all() == ["sakura-seisakusho"]


def test_blocks_on_the_programmes_app_keep_no_connection_and_no_secret_reaches_the_store(
    tmp_path, config, sessions, database_url, monkeypatch
):
    monkeypatch.setenv("CYCRAFT_KEY", "s3cr3t-api-key")
    data = settings(database_url)
    blocks = sample_companies(data, 2)
    blocks[1]["connection"] = {
        "connector": "cycraft",
        "tenant_id": "org-42",
        "base_url": "https://air.example.jp",
        "api_key": "env:CYCRAFT_KEY",
    }
    data["programme"]["courses"] = {
        "edr": {"label_ja": "EDR導入コース", "label_en": "EDR course"},
        "air": {
            "label_ja": "CyCraft AIR",
            "label_en": "CyCraft AIR",
            "connector": "cycraft",
            "seat_unit": "devices",
        },
    }
    write_config(config, data, companies=0)
    result = cli(config, "companies", "import-config", str(companies_file(tmp_path, blocks)))
    assert result.exit_code == 0, result.output
    with sessions() as session:
        own = dict(session.execute(select(Tenant.external_id, Tenant.connection)).all())
        cohorts = dict(session.execute(select(Cohort.key, Cohort.course)).all())
    assert own[SAKURA] == {}  # reached through the programme's app
    assert own["org-42"]["api_key"] == "env:CYCRAFT_KEY"  # a reference, as in the file
    assert cohorts == {"imported": "edr", "imported-air": "air"}
    assert not _columns_holding(make_engine(database_url), "s3cr3t-api-key")


def _columns_holding(engine: Engine, value: str) -> list[str]:
    """Every table.column of the store whose text holds `value`."""
    found = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                found += [f"{table.name}.{k}" for k, v in row.items() if value in str(v)]
    engine.dispose()
    return found


def test_a_named_cohort_must_be_in_the_store(tmp_path, config):
    blocks = sample_companies(settings("sqlite:///unused.db"), 1)
    result = cli(
        config,
        "companies",
        "import-config",
        str(companies_file(tmp_path, blocks)),
        "--cohort",
        "2026-spring",
    )
    assert result.exit_code == 2, result.output
    assert "no cohort '2026-spring' in the store (cohorts: none)" in result.output
    assert result.output.count("\n") == 1


def test_a_broken_block_names_the_file_and_the_key(tmp_path, config, sessions):
    blocks = sample_companies(settings("sqlite:///unused.db"), 2)
    del blocks[1]["contact_email"]
    blocks[0]["trial"] = {"started_days_ago": 70, "end": blocks[0]["trial"]["end"]}
    path = companies_file(tmp_path, blocks)
    result = cli(config, "companies", "import-config", str(path))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output
    assert "companies[0].trial: Value error, give a trial either" in result.output
    assert "companies[1].contact_email: required key is missing" in result.output
    with sessions() as session:
        assert session.scalars(select(Company.key)).all() == []


def test_a_config_still_carrying_companies_is_said_once_and_ignored(
    tmp_path, now, config, sessions, caplog
):
    data = settings("sqlite:///unused.db")
    text_ = config.read_text(encoding="utf-8") + to_toml({"companies": sample_companies(data)})
    config.write_text(text_, encoding="utf-8")
    said = (
        "config.toml carries 3 [[companies]] blocks; companies are read from the store only: "
        "import them once with `edrtrial companies import-config config.toml`, then remove "
        "them from the file"
    )
    with caplog.at_level(logging.WARNING):
        runtime = Runtime.open(load_config(config))
    try:
        assert runtime.tenants() == []  # ignored: the service works on the store's companies
    finally:
        runtime.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [said]

    result = CliRunner().invoke(main, ["--config", str(config), "companies", "list"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "[[companies]]" in line] == [
        f"warning: {said}"
    ]
    assert "no company in the store" in result.stdout

    imported = cli(config, "companies", "import-config", str(config))
    assert imported.exit_code == 0, imported.output
    assert "now remove the [[companies]] blocks from" in imported.output


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("Sakura-Seisakusho", "company keys are lower case; did you mean 'sakura-seisakusho'?"),
        ("sakura", "no company 'sakura' in the store (companies: sakura-seisakusho)"),
    ],
)
def test_a_company_key_is_checked_against_the_store(tmp_path, config, given, said):
    blocks = sample_companies(settings("sqlite:///unused.db"), 1)
    assert (
        cli(config, "companies", "import-config", str(companies_file(tmp_path, blocks))).exit_code
        == 0
    )
    result = cli(config, "poll", "--company", given)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())


def test_a_relative_file_reference_keeps_pointing_where_the_old_file_meant(
    tmp_path, config, sessions
):
    """An old config elsewhere named its secret files relative to itself: imported, each
    reference names the same file, whatever config the service runs with."""
    old = old_config(tmp_path)
    elsewhere = tmp_path / "old-site"
    elsewhere.mkdir()
    moved = old.rename(elsewhere / old.name)

    result = cli(config, "companies", "import-config", str(moved))

    assert result.exit_code == 0, result.output
    with sessions() as session:
        own = dict(session.execute(select(Tenant.external_id, Tenant.connection)).all())
    secret = own[SAKURA]["client_secret"]
    assert secret == f"file:{elsewhere.resolve()}/var/sandbox/secrets/{SAKURA}.secret"
    assert own[SAKURA]["ca_bundle"].startswith(str(elsewhere.resolve()))
