"""The cohort's anonymised results report (PDF and CSV) for the programme's results report.

The cohort here has one company alone in its industry (小売業), alone with its detection
category (ransomware) and severity, alone in having a UTM and antivirus at pre-diagnosis, and
two undecided companies; one company is purged. The tests render the files for real, read
them back (pdftotext, utf-8-sig) and try to recompute every hidden cell from what is shown.
"""

from __future__ import annotations

import csv
import io
import re
import stat
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import ProgrammeConfig, load_config
from edrtrial.db import transaction
from edrtrial.models import (
    Alert,
    Cohort,
    Company,
    Device,
    PreDiagnosis,
    Tenant,
    Ticket,
    Trial,
)
from edrtrial.programme.cohort_results import cohort_report
from edrtrial.programme.purge import purge_company
from edrtrial.reports.cohort_results import (
    HIDDEN,
    Cell,
    CohortResults,
    CompanyFigures,
    cohort_results,
    results_csv,
    results_pdf,
)

from sandbox_config import settings as sandbox_settings
from sandbox_config import write_config

# key, name, industry, category, severity, detections, decision, UTM and antivirus
COMPANIES = [
    *(
        (f"seiki{i}", f"精機工業{i}株式会社", "製造業", "Malware", "High", 2 + i, "continue", False)
        for i in range(6)
    ),
    ("hanamiya", "花宮商店", "小売業", "Ransomware", "Medium", 7, "offboard", True),
    ("oroshi1", "東都卸1株式会社", "卸売業", "Malware", "High", 3, "undecided", False),
    ("oroshi2", "東都卸2株式会社", "卸売業", "", "", 0, "undecided", False),
]
PURGED = "seiki5"


def _trial_days(now: datetime) -> tuple[date, date]:
    today = now.date()
    return today - timedelta(days=100), today - timedelta(days=10)


def add_company(
    session: Session, cohort_id: int, now: datetime, row: tuple[object, ...]
) -> list[str]:
    """One company with its tenant, trial, pre-diagnosis, devices, detections and tickets;
    every string that names it."""
    key, name, industry, category, severity, detections, decision, utm = row
    starts, ends = _trial_days(now)
    company = Company(
        key=key,
        name=name,
        contact_email=f"it@{key}.example.jp",
        state="offboarded" if decision == "offboard" else "continuing",
        state_since=now - timedelta(days=5),
        industry=industry,
        cohort_id=cohort_id,
        corporate_number=f"{abs(hash(key)) % 10**13:013d}",
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="defender", external_id=f"tid-{key}-0f1e")
    session.add(tenant)
    session.add(Trial(company_id=company.id, starts_on=starts, ends_on=ends, decision=decision))
    session.add(
        PreDiagnosis(
            company_id=company.id,
            done_at=now - timedelta(days=110),
            done_by="専門家",
            existing_utm=bool(utm),
            existing_antivirus="ウイルスバスター" if utm else "",
            security_policy="published" if utm else "none",
        )
    )
    session.flush()
    seen = datetime.combine(starts + timedelta(days=3), datetime.min.time(), tzinfo=UTC)
    devices = [f"{str(key).upper()}-PC{n}" for n in range(3)]
    for n, device in enumerate(devices):
        session.add(
            Device(
                tenant_id=tenant.id,
                source_id=f"{key}-m{n}",
                name=device,
                first_seen=seen,
                last_seen=seen + timedelta(days=80),
            )
        )
    for n in range(int(str(detections))):
        at = seen + timedelta(days=n + 1)
        session.add(
            Alert(
                tenant_id=tenant.id,
                source="defender",
                source_id=f"{key}-a{n}",
                title=f"{category} on {devices[0]}",
                severity=str(severity),
                category=str(category),
                device_names=[devices[0]],
                created_at=at,
            )
        )
        if n == 0:
            session.add(
                Ticket(
                    tenant_id=tenant.id,
                    correlation_key=f"{key}-t",
                    title=f"{category} on {devices[0]}",
                    priority="P2",
                    state="resolved",
                    created_at=at,
                    acknowledged_at=at + timedelta(minutes=10 + len(str(name))),
                    resolved_at=at + timedelta(hours=4),
                )
            )
    session.flush()
    return [str(key), str(name), tenant.external_id, company.corporate_number or "", *devices]


@pytest.fixture
def programme(tmp_path: Path) -> ProgrammeConfig:
    path = write_config(tmp_path / "p.toml", sandbox_settings("sqlite:///x.db"), companies=0)
    return load_config(path).settings.programme


@pytest.fixture
def cohort(sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """Cohort c1 with the companies above; every string that names one of them."""
    names: list[str] = []
    with transaction(sessions) as session:
        cohort = Cohort(key="c1", name="第1期", course="edr", capacity=50)
        session.add(cohort)
        session.flush()
        for row in COMPANIES:
            names += add_company(session, cohort.id, now, row)
    return names


def purge(sessions: sessionmaker[Session], programme: ProgrammeConfig, now: datetime) -> str:
    with transaction(sessions) as session:
        company = session.scalars(select(Company).where(Company.key == PURGED)).one()
        company.state = "offboarded"
        return purge_company(session, programme, company, actor="test", at=now).anon_code


def report(sessions: sessionmaker[Session], programme: ProgrammeConfig) -> CohortResults:
    with sessions() as session:
        return cohort_report(session, programme, "c1")


def pdf_text(pdf: bytes, tmp_path: Path, layout: bool = True) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def shown(results: CohortResults) -> dict[tuple[str, str, str], str]:
    return {
        (t.title, label, column): cell.text
        for t in results.tables
        for label, cells in t.rows
        for column, cell in zip(t.columns, cells, strict=True)
    }


# The attacker: every linear relation a reader knows between the report's cells.


def lines_of(results: CohortResults) -> list[tuple[list[Cell], Cell]]:
    """Each line (cells, total) a reader can write down from the report: every additive
    column; and for the pre-diagnosis table the 2 × 2 table it implies per condition (had it
    or not × continued or not), whose unprinted cells are unknowns (`implied`)."""
    tables = {t.key: t for t in results.tables}
    lines: list[tuple[list[Cell], Cell]] = []
    industry = tables["industry"]
    for column, additive in enumerate(industry.additive):
        if additive:
            lines.append(([r[1][column] for r in industry.rows[:-1]], industry.rows[-1][1][column]))
    for key in ("category", "severity", "decision"):
        rows = tables[key].rows
        lines.append(([r[1][0] for r in rows[:-1]], rows[-1][1][0]))
    return lines


def implied(results: CohortResults) -> list[tuple[list[Cell], Cell]]:
    """The pre-diagnosis table's 2 × 2 per condition, its unprinted cells as hidden cells."""
    tables = {t.key: t for t in results.tables}
    everyone = tables["industry"].rows[-1][1][0]
    continued = tables["decision"].rows[0][1][0]
    lines = []
    for _, (had, among) in tables["prediagnosis"].rows:
        rest = Cell(everyone.value - had.value, frozenset(), shown=False)
        had_left = Cell(had.value - among.value, frozenset(), shown=False)
        rest_continued = Cell(continued.value - among.value, frozenset(), shown=False)
        rest_left = Cell(rest.value - rest_continued.value, frozenset(), shown=False)
        lines += [
            ([had, rest], everyone),
            ([among, had_left], had),
            ([rest_continued, rest_left], rest),
            ([among, rest_continued], continued),
        ]
    return lines


def recomputable(results: CohortResults) -> list[tuple[Cell, float]]:
    """Hidden cells (printed "—", or implied and of 1 or 2 companies) whose value follows from
    the shown ones by linear algebra: row and column subtraction across every table, the
    same figure in several tables tied."""
    tables = {t.key: t for t in results.tables}
    ties = [
        (tables["industry"].rows[-1][1][1], tables["category"].rows[-1][1][0]),
        (tables["industry"].rows[-1][1][1], tables["severity"].rows[-1][1][0]),
        (tables["industry"].rows[-1][1][0], tables["decision"].rows[-1][1][0]),
    ]
    printed = {id(c) for t in results.tables for _, cells in t.rows for c in cells}
    equations: list[dict[int, float]] = []
    hidden: dict[int, Cell] = {}
    for cells, total in [*lines_of(results), *implied(results)]:
        equation: dict[int, float] = defaultdict(float)
        for cell in cells:
            equation[id(cell)] += 1.0
        equation[id(total)] -= 1.0
        equations.append(equation)
        for cell in (*cells, total):
            if not cell.shown:
                hidden[id(cell)] = cell
    for a, b in ties:
        equations.append({id(a): 1.0, id(b): -1.0})
        for cell in (a, b):
            if not cell.shown:
                hidden[id(cell)] = cell
    order = list(hidden)
    if not order:
        return []
    matrix = np.zeros((len(equations), len(order)))
    for row, coefficients in enumerate(equations):
        for ident, k in coefficients.items():
            if ident in hidden:
                matrix[row, order.index(ident)] += k
    rank = np.linalg.matrix_rank(matrix)
    found = []
    for i, ident in enumerate(order):
        cell = hidden[ident]
        if ident not in printed and not 0 < cell.value < 3:
            continue  # an implied cell of 0 or 3 or more companies may follow
        unit = np.zeros((1, len(order)))
        unit[0, i] = 1
        if np.linalg.matrix_rank(np.vstack([matrix, unit])) == rank:
            found.append((cell, cell.value))
    return found


def differences(results: CohortResults) -> list[tuple[float, float]]:
    """The brief subtraction: a shown total minus any set of shown cells of its line, against
    every hidden cell of that line that is not zero (a hidden zero tells nothing)."""
    found = []
    for cells, total in lines_of(results):
        if not total.shown:
            continue
        visible = [c.value for c in cells if c.shown]
        secret = [c.value for c in cells if not c.shown and c.value]
        for mask in range(1 << len(visible)):
            taken = sum(v for bit, v in enumerate(visible) if mask >> bit & 1)
            found += [(total.value - taken, s) for s in secret if total.value - taken == s]
    return found


def test_the_pdf_and_the_csv_carry_the_cohorts_figures_in_japanese(
    sessions, programme, cohort, tmp_path
):
    results = report(sessions, programme)
    assert results.companies == len(COMPANIES) and results.enough
    text = pdf_text(results_pdf(results), tmp_path)
    for heading in (
        "EDR体験 実施結果（匿名集計）",
        "全体の概要",
        "業種別",
        "検知の種類別",
        "検知の重要度別",
        "体験終了時の判断",
        "事前診断の状況と体験終了時の判断",
        "注記",
        programme.name,
        "第1期",
        "1/2",
    ):
        assert heading in text, heading
    detections = sum(int(str(row[5])) for row in COMPANIES)
    assert re.search(rf"検知件数\s+{detections}\n", text)
    assert re.search(r"社数\s+9\n", text)
    assert re.search(r"導入端末数\s+27\n", text)  # three devices each
    # The one ransomware company takes malware into その他: else 合計 − malware gives it.
    assert "ランサムウェア" not in text and "ウイルス（マルウェア）" not in text
    assert re.search(rf"その他（3社未満の区分をまとめたもの）\s+{detections}\n", text)
    rows = csv_rows(results_csv(results))
    assert rows[0] == ["表", "区分", "項目", "値"]
    table = {tuple(r[:3]): r[3] for r in rows[1:]}
    assert table[("全体の概要", "検知件数", "全体")] == str(detections)
    assert table[("業種別", "合計", "社数")] == "9"
    # 1 offboards and 2 stay undecided: both hidden together (3 companies), 継続 shown.
    assert table[("体験終了時の判断", "継続", "社数")] == "6"
    assert table[("体験終了時の判断", "継続しない（アンインストール）", "社数")] == HIDDEN
    assert table[("体験終了時の判断", "未定・その他", "社数")] == HIDDEN


def test_no_hidden_cell_can_be_recomputed_and_nothing_names_a_company(
    sessions, programme, cohort, now, tmp_path
):
    code = purge(sessions, programme, now)
    results = report(sessions, programme)
    data = results_csv(results)
    text = pdf_text(results_pdf(results), tmp_path, layout=False)
    # Singled out: the one retailer, the one ransomware, the one UTM, the two undecided.
    cells = shown(results)
    assert not any("小売" in label or "ランサム" in label for _, label, _ in cells)
    assert cells[("体験終了時の判断", "未定・その他", "社数")] == HIDDEN
    assert (
        cells[("事前診断の状況と体験終了時の判断", "既存のUTMあり", "事前診断で該当した社数")]
        == HIDDEN
    )
    hidden = [v for v in cells.values() if v == HIDDEN]
    assert len(hidden) >= 10
    # The CSV shows exactly the report's cells; the PDF no number the CSV does not show.
    csv_cells = {tuple(r[:3]): r[3] for r in csv_rows(data)[1:] if r[0] not in ("注記",)}
    for key, value in cells.items():
        assert csv_cells[key] == value.replace(",", ""), key
    allowed = {v.replace(",", "") for v in cells.values() if v != HIDDEN}
    allowed |= {"3", "90", str(results.companies)}  # "3社未満", "90%値", 対象企業数
    allowed |= {str(n) for n in range(1, len(results.notes) + 1)}  # the notes, 第1期, pages
    numbers = {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}
    assert numbers <= allowed, numbers - allowed
    # The attacker tries: subtraction along every line, then linear algebra across tables.
    assert differences(results) == []
    assert recomputable(results) == []
    # Nothing that names a company, in either file.
    everything = data.decode("utf-8-sig") + pdf_text(results_pdf(results), tmp_path)
    for name in [*cohort, code, code.lower()]:
        assert name not in everything, name


def test_a_purged_company_counts_as_it_did_before_its_purge(sessions, programme, cohort, now):
    before = shown(report(sessions, programme))
    code = purge(sessions, programme, now)
    with sessions() as session:
        assert session.scalars(select(Company.purged_at).where(Company.anon_code == code)).one()
        assert session.scalar(select(Company.name).where(Company.key == PURGED)) is None
    after = report(sessions, programme)
    assert after.companies == len(COMPANIES)
    assert shown(after) == before


def test_installation_tests_are_not_counted_as_detections(sessions, programme, cohort, now):
    """The EDR's installation test on every device is no attack: a cohort's detections are
    the same with or without them, before and after a purge."""
    before = report(sessions, programme)
    with transaction(sessions) as session:
        for tenant in session.scalars(select(Tenant)):
            for n in range(3):
                session.add(
                    Alert(
                        tenant_id=tenant.id,
                        source="defender",
                        source_id=f"test-{tenant.id}-{n}",
                        title="[Test Alert] Suspicious Powershell commandline",
                        severity="informational",
                        category="Execution",
                        device_names=[f"pc-{n}"],
                        created_at=now - timedelta(days=30),
                    )
                )
    assert shown(report(sessions, programme)) == shown(before)
    purge(sessions, programme, now)
    assert shown(report(sessions, programme)) == shown(before)


def test_a_cohort_of_fewer_than_three_shows_no_figure(tmp_path):
    one = CompanyFigures("retail", {"Malware": {"High": 4}}, 1, [5.0], [50.0], 3, 3, "continue", {})
    results = cohort_results([one, one], programme="P", secretariat="S", cohort_name="第2期")
    assert not results.enough and results.tables == []
    text = pdf_text(results_pdf(results), tmp_path)
    assert "対象企業が3社未満のため、集計値は表示しません。" in text
    assert not re.search(r"\b4\b", text)


def test_a_formula_in_the_cohorts_name_stays_text_in_the_csv():
    figures = [CompanyFigures("", {}, 0, [], [], 1, 1, "continue", {}) for _ in range(3)]
    results = cohort_results(
        figures, programme="P", secretariat="S", cohort_name='=HYPERLINK("http://x")'
    )
    rows = csv_rows(results_csv(results))
    assert rows[1][3] == '\'=HYPERLINK("http://x")'


# Random small cohorts: whatever they hold, nothing hidden comes back.

_company = st.builds(
    CompanyFigures,
    industry=st.sampled_from(["manufacturing", "wholesale", "services", "retail", ""]),
    detections=st.dictionaries(
        st.sampled_from(["Malware", "Ransomware", "Execution", "Phishing", "Weird"]),
        st.dictionaries(
            st.sampled_from(["High", "Medium", "Low", "Informational"]),
            st.integers(0, 6),
            max_size=2,
        ),
        max_size=3,
    ),
    incidents=st.integers(0, 4),
    ack_minutes=st.lists(st.floats(1, 500), max_size=3),
    resolve_minutes=st.lists(st.floats(1, 5000), max_size=3),
    devices_onboarded=st.integers(0, 30),
    devices_active=st.integers(0, 30),
    decision=st.sampled_from(["continue", "offboard", "undecided", "extend"]),
    pre_diagnosis=st.fixed_dictionaries(
        {
            "existing_utm": st.booleans(),
            "existing_antivirus": st.booleans(),
            "security_policy": st.sampled_from(["none", "partial", "documented", "published"]),
        }
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_company, min_size=3, max_size=12))
def test_random_cohorts_never_give_back_a_hidden_cell(companies: Sequence[CompanyFigures]):
    results = cohort_results(companies, programme="P", secretariat="S", cohort_name="c")
    assert differences(results) == []
    assert recomputable(results) == []
    for cells, total in lines_of(results):
        for cell in (*cells, total):
            assert cell.shown is False or not 0 < len(cell.who) < 3
        hidden = [c for c in cells if not c.shown and c.value]
        # A printed 0 beside "—" would tell the reader each "—" is 1 or more: three of them
        # under a total of 3 would be 1, 1 and 1.
        if hidden:
            assert all(not c.shown for c in cells if not c.value)
        if total.shown and hidden:
            assert len(hidden) >= 2
            assert len(frozenset().union(*(c.who for c in hidden))) >= 3


# The command.


def cli(config: Path, *args: str, code: int = 0) -> Result:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def config(tmp_path: Path, database_url: str, cohort: list[str]) -> Path:
    data = sandbox_settings(database_url, mail_dir=tmp_path / "mail")
    return write_config(tmp_path / "config.toml", data, companies=0)


def test_the_command_writes_both_files_owner_only(config, tmp_path, now):
    pdf, table = tmp_path / "out" / "c1.pdf", tmp_path / "out" / "c1.csv"
    result = cli(config, "cohorts", "results", "c1", "--pdf", str(pdf), "--csv", str(table))
    assert f"PDF written: {pdf}" in result.stdout and f"CSV written: {table}" in result.stdout
    assert "9 companies, 体験期間の全体" in result.stdout
    for path in (pdf, table):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pdf.read_bytes().startswith(b"%PDF")
    assert csv_rows(table.read_bytes())[0] == ["表", "区分", "項目", "値"]
    month = _trial_days(now)[0] + timedelta(days=40)
    one = cli(config, "cohorts", "results", "c1", "--csv", str(table), "--month", f"{month:%Y-%m}")
    assert f"9 companies, {month.year}年{month.month}月" in one.stdout


def test_the_command_refuses_an_unknown_cohort_or_a_future_month_in_one_line(config, now):
    unknown = cli(config, "cohorts", "results", "c9", "--csv", "x.csv", code=2)
    assert unknown.output.strip() == "error: no cohort 'c9'; cohorts: c1"
    ahead = now + timedelta(days=40)
    future = cli(
        config, "cohorts", "results", "c1", "--csv", "x.csv", "--month", f"{ahead:%Y-%m}", code=2
    )
    assert len(future.output.strip().splitlines()) == 1 and "has not begun" in future.output
    cli(config, "cohorts", "results", "c1", code=2)
