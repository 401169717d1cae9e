"""What an operator sees when the service cannot start, or one company cannot: one line
naming the problem and what to do, a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.models import Company, Tenant
from edrtrial.sandbox import SandboxServer

from sandbox_config import sample_companies, sample_world, serving, settings, write_config
from serve_process import Serve, edrtrial
from test_serve import free_port

SAKURA_TENANT = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"


def _one_error_line(stderr: str) -> str:
    """The error line, after making sure it is the only thing said on stderr."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "using " not in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def _config(tmp_path: Path, database_url: str, **kwargs: object) -> Path:
    """The config alone: its store is left as the test makes it (missing, damaged, ...)."""
    data = settings(database_url, **kwargs)  # type: ignore[arg-type]
    return write_config(tmp_path / "config.toml", data, companies=0)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.mark.slow
def test_a_busy_sandbox_port_is_named_with_what_to_do(tmp_path, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = _config(tmp_path, database_url, sandbox_port=port)
        assert edrtrial(config, "db", "upgrade").returncode == 0
        for command in (("serve", "--with-sandbox"), ("sandbox",)):
            run = edrtrial(config, *command)
            assert run.returncode == 2, run.stderr
            line = _one_error_line(run.stderr)
            assert f"127.0.0.1:{port} (the port is already in use)" in line
            assert "sandbox.port" in line


@pytest.mark.slow
def test_a_file_that_is_not_a_database_is_named(tmp_path):
    store = tmp_path / "store.db"
    store.write_text("company list, not a database\n" * 100, encoding="utf-8")
    store.chmod(0o600)
    config = _config(tmp_path, _sqlite_url(tmp_path))
    for command in (("db", "current"), ("serve",)):
        run = edrtrial(config, *command)
        assert run.returncode == 2, run.stderr
        line = _one_error_line(run.stderr)
        assert f"{store}: it is not a SQLite database" in line
        assert "move the file away" in line
    assert store.read_text(encoding="utf-8").startswith("company list")  # left as it was


def test_a_readable_text_file_given_as_the_database_gets_no_chmod_advice(tmp_path):
    """A text file left with the usual 0644 is not a store to make private: the one line
    says to move it away, not to chmod it."""
    store = tmp_path / "store.db"
    store.write_text("company list, not a database\n" * 100, encoding="utf-8")
    store.chmod(0o644)
    config = _config(tmp_path, _sqlite_url(tmp_path))
    for command in (("db", "current"), ("tickets",)):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert result.exit_code == 2, result.output
        line = _one_error_line(result.output)
        assert "it is not a SQLite database" in line and "move the file away" in line
        assert "chmod" not in result.output


def _damaged(tmp_path: Path, how: str) -> Path:
    store = tmp_path / "store.db"
    config = _config(tmp_path, _sqlite_url(tmp_path))
    assert edrtrial(config, "db", "upgrade").returncode == 0
    assert edrtrial(config, "db", "current").returncode == 0  # whole before
    data = bytearray(store.read_bytes())
    page = 4096
    if how == "truncated":
        data = data[: len(data) // 2 + 100]
    else:  # pages overwritten from the third on (the header and schema stay readable)
        for at in range(2 * page, len(data), 7):
            data[at] = 0xA5
    store.write_bytes(bytes(data))
    return config


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_db_current_tells_a_damaged_store_from_a_good_one(tmp_path, how):
    config = _damaged(tmp_path, how)
    run = edrtrial(config, "db", "current")
    assert run.returncode == 2, run.stdout + run.stderr
    line = _one_error_line(run.stderr)
    assert "damaged" in line and "restore it from a backup" in line


def test_db_current_says_a_good_store_checks_whole(tmp_path, database_url, engine):
    config = _config(tmp_path, database_url)
    result = CliRunner().invoke(main, ["--config", str(config), "db", "current"])
    assert result.exit_code == 0, result.output
    assert "the store checks whole" in result.output


def test_db_current_names_the_first_of_many_problems_in_one_short_line(tmp_path):
    """SQLite gives a page's problems as one text of many lines: the operator reads the
    first and how many more, not pages of them joined with line marks."""
    store = tmp_path / "store.db"
    config = _config(tmp_path, _sqlite_url(tmp_path))
    CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    with sqlite3.connect(store) as conn:
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND rootpage > 0"
        ).fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(store.read_bytes())
    data[(root - 1) * page + 3 : (root - 1) * page + 5] = (10).to_bytes(2, "big")  # 10 cells
    store.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["--config", str(config), "db", "current"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert f"{store} is damaged: On tree page {root} cell " in line
    assert "more problems); stop the service and restore it from a backup" in line
    assert "***" not in line and "\u240a" not in line
    assert len(line) < 300


def test_db_current_on_a_missing_file_says_so_and_makes_no_store(tmp_path):
    """A mistyped path or a disk not mounted is not an empty store that checks whole."""
    store = tmp_path / "not-mounted" / "edrtrial.db"
    config = _config(tmp_path, f"sqlite:///{store}")
    result = CliRunner().invoke(main, ["--config", str(config), "db", "current"])
    assert result.exit_code == 2, result.output
    assert "no such file" in result.output and "check database.url" in result.output
    assert "checks whole" not in result.output
    assert not store.parent.exists()


@pytest.mark.parametrize("command", [("serve",), ("status",), ("tickets",)])
def test_a_missing_store_is_named_and_not_made_empty_by_any_command(tmp_path, command):
    """A mistyped path or a disk not mounted: serve and the lists say the file is not there,
    not that an empty store they just made there wants `db upgrade`."""
    store = tmp_path / "not-mounted" / "edrtrial.db"
    config = _config(tmp_path, f"sqlite:///{store}")
    result = CliRunner().invoke(main, ["--config", str(config), *command])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert "no such file" in line and "check database.url" in line
    assert not store.parent.exists()


def test_a_folder_given_as_the_database_is_named_in_one_line(tmp_path):
    folder = tmp_path / "var"
    folder.mkdir()
    config = _config(tmp_path, f"sqlite:///{folder}")
    for command in (("db", "current"), ("serve",)):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert result.exit_code == 2, result.output
        line = _one_error_line(result.output)
        assert "is a folder, not a SQLite file" in line and "check database.url" in line
        assert "chmod" not in result.output


@pytest.mark.slow
def test_serve_on_a_damaged_store_stops_in_one_line(tmp_path):
    config = _damaged(tmp_path, "overwritten")
    run = edrtrial(config, "serve")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "damaged" in _one_error_line(run.stderr)


@pytest.mark.slow
def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path):
    url = f"postgresql+psycopg://edr:s3cret-pw@127.0.0.1:{free_port()}/edrtrial"
    config = _config(tmp_path, url)
    for command in (("db", "current"), ("serve",), ("poll",)):
        run = edrtrial(config, *command)
        assert run.returncode == 2, run.stderr
        line = _one_error_line(run.stderr)
        assert "cannot reach it" in line and "check that PostgreSQL runs" in line
        assert "s3cret-pw" not in run.stderr + run.stdout


def _sakura_secret_missing(
    tmp_path: Path, server: SandboxServer, database_url: str
) -> tuple[Path, Path]:
    """The sample programme with sakura on a connection of its own, whose secret file (a
    reference in the store) is missing; the others on the programme's app."""
    data = settings(
        database_url,
        base_url=server.base_url,
        state_dir=server.state_dir,
        mail_dir=tmp_path / "mail",
    )
    blocks = sample_companies(data)
    missing = server.secret_path(SAKURA_TENANT)
    blocks[0]["connection"]["client_secret"] = f"file:{missing}"
    config = write_config(tmp_path / "config.toml", data, companies=blocks)
    missing.unlink()
    return config, missing


def test_a_missing_secret_file_parks_that_company_with_the_reason_and_the_others_poll(
    tmp_path, now, database_url, engine
):
    with serving(sample_world(), tmp_path / "sandbox") as server:
        config, missing = _sakura_secret_missing(tmp_path, server, database_url)
        result = CliRunner().invoke(
            main, ["--config", str(config), "poll", "--no-deliver"], catch_exceptions=False
        )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"cannot read secret file {missing}" in result.output
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                select(Company.key, Tenant.state_reason).join(
                    Tenant, Tenant.company_id == Company.id
                )
            ).all()
        )
        polled = dict(
            conn.execute(
                select(Company.key, Tenant.last_success_at).join(
                    Tenant, Tenant.company_id == Company.id
                )
            ).all()
        )
    assert f"cannot read secret file {missing}" in states["sakura-seisakusho"]
    assert polled["sakura-seisakusho"] is None
    assert polled["midori-shoji"] is not None and polled["aozora-design"] is not None


@pytest.mark.slow
def test_serve_parks_a_company_whose_secret_file_is_missing_and_serves_the_others(
    tmp_path, now, database_url, engine
):
    with serving(sample_world(), tmp_path / "sandbox") as server:
        config, missing = _sakura_secret_missing(tmp_path, server, database_url)
        serve = Serve(config, tmp_path / "serve.log")

        def parked_and_polled() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(Company.key, Tenant.state, Tenant.last_success_at).join(
                        Tenant, Tenant.company_id == Company.id
                    )
                ).all()
            return any(k == "sakura-seisakusho" and s == "parked" for k, s, _ in rows) and all(
                p is not None for k, _, p in rows if k != "sakura-seisakusho"
            )

        try:
            serve.wait_until("sakura parked and the others polled", parked_and_polled, 60)
        finally:
            code = serve.stop()
    output = serve.output()
    assert code == 0, output
    assert "Traceback" not in output
    parked = [line for line in output.splitlines() if "parked" in line and str(missing) in line]
    assert parked, output
