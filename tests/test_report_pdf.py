"""The company's monthly report as a PDF, rendered for real and read back with poppler.

The report is assembled from stored rows the way the service does it (`detection_report_for`),
rendered by WeasyPrint, and read with `pdftotext`: what a company would find on paper.
Dates are relative to the test's now (clock.NOW): last month is the period.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig, MailConfig, ProgrammeConfig, Settings
from edrtrial.db import transaction
from edrtrial.errors import ReportPeriodError
from edrtrial.models import Alert, Company, Device, ResponseAction, Tenant, Ticket, Trial
from edrtrial.notify.report_mail import detection_report_for
from edrtrial.reports.detection import DetectionReport
from edrtrial.reports.render import detection_report_mail, detection_report_pdf
from edrtrial.timeutil import jst_date, jst_day_bounds

from clock import NOW

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (make test installs it)"
)

TODAY = jst_date(NOW)
END = TODAY.replace(day=1) - timedelta(days=1)  # last month, whole
START = END.replace(day=1)
PERIOD_END = jst_day_bounds(END, END)[1]  # the instant the period ends (midnight in Tokyo)
EVIL = "<script>alert('x')</script>"
BIDI = "invoice\u202efdp.exe"
SETTINGS = Settings(
    mail=MailConfig(from_address="reports@example.jp"),
    desk=DeskConfig(
        name="EDR体験 運営事務局",
        email="desk@example.jp",
        phone="03-0000-0000",
        hours="平日 9:00〜17:00",
        incident_desk_phone="03-1111-1111",
    ),
    programme=ProgrammeConfig(
        name="東京都中小企業サイバーセキュリティ基本対策事業",
        secretariat="EDR体験 運営事務局",
        secretariat_contact="東京都千代田区丸の内1-1-1\nTEL 03-0000-0000",
    ),
)


def _at(day: date, hour: int = 10) -> datetime:
    return jst_day_bounds(day, day)[0] + timedelta(hours=hour)


def store_company(
    sessions: sessionmaker[Session], key: str, language: str = "ja", *, detections: bool = True
) -> int:
    """A company in its trial with four devices (one silent for 9 days at the period's end,
    one seen 3 days before it: silent counted from today, active counted from the period's
    end), and last month: a high detection the desk works on (acknowledged in 12 minutes,
    the device isolated), a medium one merely received, the installation test; one detection
    the month before."""
    with transaction(sessions) as session:
        company = Company(
            key=key,
            name=f"株式会社{key}<b>&",
            contact_name="山田 太郎",
            contact_email=f"it@{key}.example.jp",
            language=language,
            planned_seats=20,
        )
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector="defender", external_id=f"t-{key}")
        session.add(tenant)
        session.add(
            Trial(
                company_id=company.id,
                starts_on=START - timedelta(days=40),  # the month before is in it
                ends_on=TODAY + timedelta(days=30),
            )
        )
        session.flush()
        seen = {
            "pc-01": NOW - timedelta(hours=2),
            "pc-02": NOW - timedelta(hours=5),
            "pc-recent": PERIOD_END - timedelta(days=3),
            "pc-silent": PERIOD_END - timedelta(days=9),
        }
        devices = {}
        for number, (name, last_seen) in enumerate(seen.items()):
            devices[name] = Device(
                tenant_id=tenant.id,
                source_id=f"m-{key}-{number}",
                name=BIDI if name == "pc-02" else name,
                in_inventory=True,
                onboarding_status="Onboarded",
                last_seen=last_seen,
            )
            session.add(devices[name])
        session.flush()
        if detections:
            _detections(session, tenant, devices)
        return company.id


def _detections(session: Session, tenant: Tenant, devices: dict[str, Device]) -> None:
    at = _at(START + timedelta(days=4))
    worked = Ticket(
        tenant_id=tenant.id,
        correlation_key="inc:1",
        title=EVIL,
        priority="P1",
        state="in_progress",
        created_at=at,
        acknowledged_at=at + timedelta(minutes=12),
    )
    waiting = Ticket(
        tenant_id=tenant.id,
        correlation_key="inc:2",
        title="x",
        priority="P3",
        state="new",
        created_at=at + timedelta(days=3),
    )
    session.add_all([worked, waiting])
    session.flush()
    rows = [
        (at, "high", "Ransomware", EVIL, BIDI, worked.id),
        (at + timedelta(days=3), "medium", "CredentialAccess", "Mimikatz", "pc-01", waiting.id),
        (_at(START + 1 * timedelta(days=1)), "informational", "", "[Test Alert] x", "pc-01", None),
        (_at(START - timedelta(days=5)), "low", "Execution", "Earlier", "pc-01", None),
    ]
    for number, (created, severity, category, title, device, ticket_id) in enumerate(rows):
        session.add(
            Alert(
                tenant_id=tenant.id,
                source="mde",
                source_id=f"a{number}",
                created_at=created,
                severity=severity,
                category=category,
                title=title,
                status="new",
                device_names=[device],
                ticket_id=ticket_id,
            )
        )
    session.add(
        ResponseAction(
            dedupe_key=f"isolate:{tenant.id}",
            tenant_id=tenant.id,
            device_id=devices["pc-02"].id,
            ticket_id=worked.id,
            kind="isolate",
            status="succeeded",
            created_at=at + timedelta(minutes=20),
        )
    )
    session.flush()


def monthly(sessions: sessionmaker[Session], company_id: int) -> DetectionReport:
    with sessions() as session:
        return detection_report_for(
            session, company_id, START, END, now=NOW, settings=SETTINGS, kind="monthly"
        )


def pdf_text(pdf: bytes, tmp_path: Path, *, layout: bool = False) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    options = ["-layout"] if layout else []
    return subprocess.run(
        ["pdftotext", *options, str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def pdf_pages(pdf: bytes, tmp_path: Path) -> int:
    path = tmp_path / "pages.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True)
    return int(next(line for line in info.stdout.splitlines() if line.startswith("Pages:"))[6:])


def flat(text: str) -> str:
    """pdftotext's text without its line breaks and spaces (a table cell wraps anywhere)."""
    return "".join(text.split())


def test_monthly_pdf_carries_headings_figures_and_charts(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    report = monthly(sessions, store_company(sessions, "acme"))
    pdf = detection_report_pdf(report)
    assert pdf.startswith(b"%PDF-")
    text = flat(pdf_text(pdf, tmp_path))
    for heading in (
        "EDR体験月次検知レポート",
        "1.この期間のまとめ",
        "2.検知の推移と種類",
        "3.検知の一覧",
        "4.インシデント対応窓口の対応",
        "5.端末の状況",
        "6.貴社にお願いしたいこと",
        "7.無料体験の残り期間と終了後のこと",
        "8.お問い合わせ",
    ):
        assert heading in text, heading
    # Letterhead, company and period.
    assert "東京都中小企業サイバーセキュリティ基本対策事業" in text
    assert "東京都千代田区丸の内1-1-1" in text
    assert "株式会社acme<b>&" in text
    assert f"{START:%Y/%m/%d}" in text and f"{END:%Y/%m/%d}" in text
    # The period's figures: three detections, one more than the month before.
    assert "EDRによる検知が3件ありました" in text
    assert "前月より2件増えました（前月は1件）。" in text
    assert "1件はインシデント対応窓口が対応中です。" in text
    assert "1件はインシデント対応窓口が受け付け、確認を待っています。" in text
    assert "1台の端末をネットワークから隔離しました。" in text
    assert "12分（30分以内）" in text and "目標内" in text
    assert "ネットワークからの隔離完了" in text
    # The charts' own text is text in the PDF: titles, axis labels, legend, kinds.
    for chart_text in ("日別の検知件数（重要度別）", "検知の種類", "件数", "日付", "重要度高"):
        assert chart_text in text, chart_text
    assert "ランサムウェア" in text and "動作確認テスト" in text
    # Trial end in the programme's words; page numbers "n / N".
    assert "アンインストール" in text and "受託事業者と契約し" in text
    pages = pdf_pages(pdf, tmp_path)
    assert f"1/{pages}" in text and f"{pages}/{pages}" in text


def test_silent_devices_are_counted_from_the_period_end(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    report = monthly(sessions, store_company(sessions, "acme"))
    # Counted from today, pc-recent (3 days before the period's end) would be silent too.
    devices = report.devices
    assert (devices.onboarded, devices.active_recent, devices.silent) == (4, 3, 1)
    assert [q.name for q in devices.quiet] == ["pc-silent"]
    text = flat(pdf_text(detection_report_pdf(report), tmp_path))
    assert "7日以上確認できていない端末（期間の最終日時点）1台" in text
    assert "申込台数/上限20台/300台" in text


def test_hostile_title_and_device_name_stay_text_in_the_pdf(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    report = monthly(sessions, store_company(sessions, "acme"))
    text = pdf_text(detection_report_pdf(report), tmp_path)
    assert flat(EVIL) in flat(text)  # printed as written, not run
    assert "\u202e" not in text  # the override never reorders the name
    assert "invoice\\u202efdp.exe" in flat(text)


def test_english_company_gets_an_english_pdf_and_mail(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    report = monthly(sessions, store_company(sessions, "globex", "en"))
    text = pdf_text(detection_report_pdf(report), tmp_path, layout=True)
    for heading in (
        "EDR trial: monthly detection report",
        "Summary of the period",
        "What the incident desk did",
        "Your devices",
        "Days left in the trial and what happens at the end",
        "Detections per day, by severity",
        "Detections by kind",
    ):
        assert heading in text, heading
    assert "2 more than the previous month (1)." in " ".join(text.split())
    assert "この期間" not in text and "重要度" not in text and "お問い合わせ" not in text
    mail = detection_report_mail(report)
    assert mail.subject.startswith("[EDR trial] Monthly detection report (")
    assert "Attn: 山田 太郎" in mail.text and "Summary of the period" in mail.text
    assert mail.html is not None and '<html lang="en">' in mail.html


def test_a_period_without_detections_says_so_and_shows_coverage(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    report = monthly(sessions, store_company(sessions, "quiet", detections=False))
    text = flat(pdf_text(detection_report_pdf(report), tmp_path))
    assert "この期間、EDRによる検知はありませんでした。" in text
    assert "EDRは引き続き、4台の端末を見守っています。" in text
    assert "この期間の検知はないため、グラフはありません。" in text
    assert "EDRが入っている端末4台" in text
    assert "前月と同じ件数でした。" in text


def test_a_period_that_has_not_ended_is_refused(sessions: sessionmaker[Session]) -> None:
    company_id = store_company(sessions, "acme", detections=False)
    with sessions() as session:
        with pytest.raises(ReportPeriodError, match="ends after today"):
            detection_report_for(
                session,
                company_id,
                TODAY.replace(day=1),
                TODAY + timedelta(days=1),
                now=NOW,
                settings=SETTINGS,
                kind="monthly",
            )
        # Up to today is a period that has come: a report for it can be made.
        week = detection_report_for(
            session, company_id, TODAY - timedelta(days=6), TODAY, now=NOW, settings=SETTINGS
        )
    assert week.end == TODAY


def test_first_page_as_an_image_for_a_person_to_look_at(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """`pdftoppm -png -r 60 -f 1 -l 1 report.pdf page` (README, Reports): the page has
    ink on it (text and the chart), not a blank sheet from a missing font."""
    pdf = detection_report_pdf(monthly(sessions, store_company(sessions, "acme")))
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "report.pdf", "page"],
        cwd=tmp_path,
        check=True,
    )
    [png] = list(tmp_path.glob("page*.png"))
    with Image.open(png) as image:
        assert abs(image.size[0] - 496) <= 1 and abs(image.size[1] - 702) <= 1  # A4, 60 dpi
        grey = image.convert("L")
        histogram = grey.histogram()
    dark = sum(histogram[:128])
    assert dark > 3000, "page 1 is nearly blank"


def test_the_addressee_is_the_company_on_its_line_then_the_contact(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """English: "Attn: name" under the company, never "<company> Dear name," on one line;
    Japanese: "name 様" under the company. In the PDF and in the mail's text part."""
    english = monthly(sessions, store_company(sessions, "globex", "en"))
    lines = [
        line.strip()
        for line in pdf_text(detection_report_pdf(english), tmp_path, layout=True).splitlines()
    ]
    company = "株式会社globex<b>&"
    at = lines.index(company)
    assert lines[at + 1] == "Attn: 山田 太郎"
    assert not any("Dear" in line for line in lines)
    text = detection_report_mail(english).text.splitlines()
    at = text.index(company)
    assert text[at + 1] == "Attn: 山田 太郎"
    japanese = monthly(sessions, store_company(sessions, "acme"))
    lines = [
        line.strip()
        for line in pdf_text(detection_report_pdf(japanese), tmp_path, layout=True).splitlines()
    ]
    at = lines.index("株式会社acme<b>&")
    assert lines[at + 1] == "山田 太郎 様"
    text = detection_report_mail(japanese).text.splitlines()
    assert text[text.index("株式会社acme<b>&") + 1] == "山田 太郎 様"
