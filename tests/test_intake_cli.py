"""`edrtrial applications import | add | review | import-predecessors` as an operator runs them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from intake_rows import GOOD, SOLE, csv_bytes, row
from sqlalchemy import func, select

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions, upgrade
from edrtrial.models import Application, AuditEvent, Company

from sandbox_config import settings, write_config

SAMPLE = Path(str(files("edrtrial.programme") / "samples" / "applications.csv"))


@pytest.fixture
def config(tmp_path: Path, database_url: str, now) -> Path:
    """A config on a migrated, empty store (no sample companies)."""
    upgrade(make_engine(database_url))
    data = settings(database_url, mail_dir=tmp_path / "mail")
    return write_config(tmp_path / "config.toml", data, companies=0)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def states(database_url: str) -> dict[str, str]:
    with make_sessions(make_engine(database_url))() as session:
        return dict(session.execute(select(Company.key, Company.state)).all())


def test_the_shipped_sample_imports_once_and_then_changes_nothing(config, database_url) -> None:
    first = invoke(config, "applications", "import", str(SAMPLE))
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[0] == "applications.csv (cp932): 6 rows"
    assert "line 2: c-1012345 株式会社さくら製作所: eligible, call due 2026-12-03" in lines
    assert "line 5: c-1077777 浪速精工株式会社: not eligible" in lines
    assert "    東京都内に主たる事業所を有していません（所在地: 大阪府）" in lines
    assert any(
        line.startswith("line 6: c-1054321 有限会社たちばなネット: needs review") for line in lines
    )
    assert lines[-1] == (
        "6 imported (3 eligible, 1 needs review, 2 not eligible), 0 already imported, "
        "0 repeats, 0 bad"
    )
    assert states(database_url) == {
        "c-1012345": "eligible",
        "c-1098765": "eligible",
        "sp-0001": "eligible",
        "c-1077777": "not_eligible",
        "c-1054321": "needs_review",
        "c-1143210": "not_eligible",
    }
    again = invoke(config, "applications", "import", str(SAMPLE))
    assert again.exit_code == 0, again.output
    assert "line 2: c-1012345 already imported (#1)" in again.output
    assert again.output.splitlines()[-1].startswith("0 imported")
    assert "6 already imported" in again.output


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_bad_rows_are_named_by_line_the_good_ones_imported_and_the_exit_is_1(
    config, database_url, tmp_path, encoding: str
) -> None:
    file = tmp_path / "web.csv"
    file.write_bytes(
        csv_bytes(
            [
                row(会社名="株式会社①テック～東京"),
                row(従業員数="多数", 受付日時="2026/11/21 10:00"),
                SOLE,
                row(受付日時="2026/11/22 10:00"),  # the same company again
            ],
            encoding,
        )
    )
    result = invoke(config, "applications", "import", str(file))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == [
        "line 2: c-1012345 株式会社①テック～東京: eligible, call due 2026-11-26",
        "line 3: 従業員数: '多数' is not a whole number (write e.g. 45 or 45名)",
        "line 4: sp-0001 青空デザイン事務所: eligible, call due 2026-11-26",
    ]
    assert lines[4].startswith("line 5: c-1012345 applied again: application #3 is a repeat")
    assert lines[-1].endswith("0 already imported, 1 repeats, 1 bad")
    engine = make_engine(database_url)
    with make_sessions(engine)() as session:
        name, raw = session.execute(
            select(Company.name, Application.raw).join(Company).where(Company.key == "c-1012345")
        ).first()  # type: ignore[misc]
        assert name == raw["会社名"] == "株式会社①テック～東京"
        assert session.scalar(select(func.count()).select_from(Company)) == 2


def test_a_file_that_cannot_be_read_is_one_line_and_exit_2(config, tmp_path) -> None:
    missing = invoke(config, "applications", "import", str(tmp_path / "none.csv"))
    assert missing.exit_code == 2
    assert "none.csv: No such file or directory" in missing.output
    header_only = tmp_path / "x.csv"
    header_only.write_text("会社名,業種\r\n", encoding="utf-8")
    result = invoke(config, "applications", "import", str(header_only))
    assert result.exit_code == 2
    assert (
        "x.csv: no column 受付日時, 代表者名, 所在地, 担当者メール in the header" in result.output
    )


def test_one_application_is_added_from_the_command_line(config, database_url) -> None:
    args = [
        "applications",
        "add",
        "--name",
        "山田商店",
        "--sole-proprietor",
        "--representative",
        "山田 一",
        "--address",
        "東京都台東区浅草1-1",
        "--industry",
        "小売業",
        "--employees",
        "2",
        "--contact-email",
        "yamada@example.jp",
    ]
    result = invoke(config, *args, "--attest", "all")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "sp-0001 山田商店: eligible, call due 2026-11-30"
    again = invoke(config, *args, "--attest", "all")
    assert again.output.startswith("sp-0001 applied before: a repeat of sp-0001 application #1")
    some = invoke(config, *args[:3], "山田商店二号", *args[4:], "--attest", "ア,イ,no_mlm")
    assert some.exit_code == 0, some.output
    assert some.output.splitlines()[0] == "sp-0002 山田商店二号: not eligible"
    assert "宣誓ウがありません" in some.output
    assert "宣誓カ" not in some.output
    wrong = invoke(config, *args, "--attest", "ズ")
    assert wrong.exit_code == 2
    assert "--attest: no attestation ズ" in wrong.output
    neither = invoke(config, *[a for a in args if a != "--sole-proprietor"])
    assert neither.exit_code == 2
    assert "give --corporate-number, or --sole-proprietor" in neither.output
    assert states(database_url) == {"sp-0001": "eligible", "sp-0002": "not_eligible"}


def test_the_secretariat_decides_a_review_and_the_audit_names_them(config, database_url) -> None:
    invoke(config, "applications", "import", str(SAMPLE))
    result = invoke(
        config,
        "applications",
        "review",
        "c-1054321",
        "eligible",
        "--reason",
        "情報通信業はその他の業種",
        "--by",
        "佐藤",
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "c-1054321 eligible"
    assert states(database_url)["c-1054321"] == "eligible"
    with make_sessions(make_engine(database_url))() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "company.judge_eligible",
                AuditEvent.target == "company:c-1054321",
            )
        ).one()
        assert event.actor.startswith("cli:")
        assert event.on_behalf_of == "佐藤"
        assert event.detail["why"] == "情報通信業はその他の業種"
    twice = invoke(config, "applications", "review", "c-1054321", "eligible", "--reason", "x")
    assert twice.exit_code == 2
    assert "company 'c-1054321' is eligible" in twice.output
    assert "company 'c-1054321' is eligible already" in twice.output
    assert "judge_" not in twice.output
    unknown = invoke(config, "applications", "review", "c-9", "not-eligible", "--reason", "x")
    assert unknown.exit_code == 2
    assert "no company 'c-9' in the store" in unknown.output
    miscased = invoke(config, "applications", "review", "C-1054321", "eligible", "--reason", "x")
    assert miscased.exit_code == 2
    assert "did you mean 'c-1054321'?" in miscased.output


def test_the_predecessor_list_is_imported_once_and_excludes_its_companies(config, tmp_path) -> None:
    listing = tmp_path / "past.csv"
    listing.write_bytes(
        "法人番号,名称,事業名,年度\r\n"
        "5010801012345,株式会社さくら製作所,中小企業サイバーセキュリティ向上支援事業,2023年度\r\n"
        "123,壊れた行,事業,2022年度\r\n".encode("cp932")
    )
    first = invoke(config, "applications", "import-predecessors", str(listing))
    assert first.exit_code == 1
    assert first.output.splitlines() == [
        "line 3: 法人番号: 法人番号 has 3 digits, not 13",
        "1 added, 0 already known, 1 bad",
    ]
    again = invoke(config, "applications", "import-predecessors", str(listing))
    assert again.output.splitlines()[-1] == "0 added, 1 already known, 1 bad"
    web = tmp_path / "web.csv"
    web.write_bytes(csv_bytes([GOOD]))
    result = invoke(config, "applications", "import", str(web))
    assert "line 2: c-1012345 株式会社さくら製作所: not eligible" in result.output
    assert "中小企業サイバーセキュリティ向上支援事業（2023年度）" in result.output


def test_a_name_carrying_terminal_controls_is_shown_as_text(config, tmp_path) -> None:
    file = tmp_path / "web.csv"
    file.write_bytes(csv_bytes([row(会社名="株式会社\x1b[2Jさくら")], "utf-8"))
    result = invoke(config, "applications", "import", str(file))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "株式会社␛[2Jさくら" in result.output
