"""Rendering the detection report: sections in reading order, escaping, the mail's parts,
in Japanese and in English, from a report built the way the service builds it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.coverage import coverage_at
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket, Trial
from edrtrial.reports.detection import DetectionReport, build_detection_report
from edrtrial.reports.render import (
    detection_report_mail,
    render_detection_report_html,
    render_detection_report_print,
    render_detection_report_text,
)

EVIL = "<script>alert('x')</script>"
BIDI = "invoice\u202efdp.exe"
DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
PROGRAMME = ProgrammeConfig(
    name="東京都中小企業サイバーセキュリティ基本対策事業",
    secretariat="EDR体験 運営事務局",
    secretariat_contact="東京都千代田区丸の内1-1-1\nTEL 03-0000-0000",
)
NOW = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)  # Monday 09:00 in Tokyo
START, END = date(2026, 11, 1), date(2026, 11, 7)
# The report is written on 2026/11/09, day 40 of a trial that runs to 2026/12/31.
TRIAL = Trial(starts_on=date(2026, 10, 1), ends_on=date(2026, 12, 31), decision="undecided")
IN_TRIAL = coverage_at(TRIAL, NOW)
VOID = {"meta", "br", "img", "hr", "link", "input"}


def _company(language: str = "ja") -> Company:
    return Company(
        id=1,
        key="acme",
        name="株式会社アクメ&サンズ",
        contact_name="山田 太郎",
        contact_email="yamada@example.jp",
        language=language,
        planned_seats=15,
        seat_cap=300,
    )


def _alert(number: int, at: datetime, ticket: Ticket | None = None, **fields: object) -> Alert:
    values: dict[str, object] = {
        "title": "Suspicious activity",
        "severity": "medium",
        "category": "Execution",
        "status": "new",
        "device_names": ["pc-01"],
    }
    values.update(fields)
    alert = Alert(id=number, tenant_id=1, source="mde", source_id=f"a{number}", created_at=at)
    for key, value in values.items():
        setattr(alert, key, value)
    alert.ticket = ticket
    alert.ticket_id = ticket.id if ticket else None
    return alert


def _device(number: int, name: str, last_seen: datetime | None) -> Device:
    return Device(
        id=number,
        tenant_id=1,
        source_id=f"m-{number}",
        name=name,
        in_inventory=True,
        onboarding_status="Onboarded",
        last_seen=last_seen,
        detection_test_at=last_seen,
    )


def sample_parts(
    language: str = "ja",
) -> tuple[Company, list[Alert], list[Device], list[ResponseAction]]:
    """A week with a test alert, a ransomware detection handled by the desk (P1, acknowledged
    in 12 minutes, the device isolated), and one device silent since October."""
    at = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)
    ticket = Ticket(
        id=7,
        tenant_id=1,
        title=EVIL,
        priority="P1",
        state="in_progress",
        created_at=at,
        acknowledged_at=at + timedelta(minutes=12),
    )
    alerts = [
        _alert(
            1,
            datetime(2026, 11, 2, 1, 0, tzinfo=UTC),
            title="[Test Alert] Suspicious Powershell commandline",
            severity="informational",
        ),
        _alert(
            2, at, ticket, title=EVIL, severity="high", category="Ransomware", device_names=[BIDI]
        ),
    ]
    devices = [_device(n, f"pc-{n:02d}", NOW - timedelta(days=1)) for n in range(1, 12)]
    devices.append(_device(12, "pc-09-old", datetime(2026, 10, 20, 3, tzinfo=UTC)))
    isolate = ResponseAction(
        id=1,
        tenant_id=1,
        device_id=2,
        kind="isolate",
        status="succeeded",
        created_at=at + timedelta(minutes=20),
    )
    isolate.device = devices[1]
    return _company(language), alerts, devices, [isolate]


def sample_report(language: str = "ja", kind: str = "weekly") -> DetectionReport:
    company, alerts, devices, actions = sample_parts(language)
    return build_detection_report(
        company,
        1,
        alerts,
        devices,
        TRIAL,
        START,
        END,
        now=NOW,
        desk=DESK,
        programme=PROGRAMME,
        kind=kind,
        previous_total=5,
        actions=actions,
    )


def empty_report(language: str = "ja") -> DetectionReport:
    company, _, devices, _ = sample_parts(language)
    return build_detection_report(
        company, 1, [], devices, TRIAL, START, END, now=NOW, desk=DESK, programme=PROGRAMME
    )


class _Balance(HTMLParser):
    """Collects tag-nesting errors, so a broken template fails the test."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <path ... /> in the inline SVG

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


JA_HEADINGS = (
    "この期間のまとめ",
    "検知の推移と種類",
    "検知の一覧",
    "インシデント対応窓口の対応",
    "端末の状況",
    "貴社にお願いしたいこと",
    "無料体験の残り期間と終了後のこと",
    "お問い合わせ",
)
EN_HEADINGS = (
    "Summary of the period",
    "Detections over time and by kind",
    "What was detected",
    "What the incident desk did",
    "Your devices",
    "What we ask you to do",
    "Days left in the trial and what happens at the end",
    "Contact",
)


def test_mail_html_is_a_whole_japanese_document_in_reading_order() -> None:
    html = render_detection_report_html(sample_report())
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="ja">' in html and '<meta charset="utf-8">' in html
    positions = [html.index(f"{n}. {s}") for n, s in enumerate(JA_HEADINGS, start=1)]
    assert positions == sorted(positions)
    for text in (
        "株式会社アクメ&amp;サンズ",
        "EDR体験 週次検知レポート",
        "重要度 高",
        "パソコンや機器の更新（パッチ）",
        "動作確認テスト（対応不要）",
        "対応中（受付番号 #7）",
        "12分（30分以内）",
        "目標内",
        "ネットワークからの隔離",
        "03-1111-1111",
        "desk@example.jp",
        "pc-09-old（最後の確認：2026/10/20）",
        "https://www.ipa.go.jp/security/security-action/",
        "前週より3件減りました（前週は5件）。",
        "無料体験は2026/12/31に終了します（残り52日）。",
        "アンインストール",
    ):
        assert text in html, text
    # Mail clients drop external and embedded style sheets: every style is an attribute.
    assert "<link" not in html and "<style" not in html and 'style="' in html
    assert html.count("<svg") == 2  # both charts, inline
    checker = _Balance()
    checker.feed(html)
    assert checker.errors == [] and checker.stack == []


def test_hostile_titles_and_device_names_stay_text() -> None:
    report = sample_report()
    for html in (render_detection_report_html(report), render_detection_report_print(report)):
        assert EVIL not in html and "<script" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
        assert "\u202e" not in html  # the override is shown as a mark, never applied
        assert "invoice" in html and "fdp.exe" in html


def test_text_part_has_the_same_sections_without_markup() -> None:
    text = render_detection_report_text(sample_report())
    for number, heading in enumerate(JA_HEADINGS, start=1):
        assert f"■ {number}. {heading}" in text
    assert "重要度：高 1、中 0、低 0、情報 1" in text
    assert f"EDRの表示名：{EVIL}" in text  # plain text is not HTML: shown as written
    assert "<td" not in text and "&amp;" not in text and "<svg" not in text


def test_empty_period_says_so_reassuringly_without_an_empty_chart() -> None:
    report = empty_report()
    html = render_detection_report_html(report)
    text = render_detection_report_text(report)
    for shown in (html, text):
        assert "この期間、EDRによる検知はありませんでした。" in shown
        assert "EDRは引き続き、12台の端末を見守っています。" in shown
        assert "この期間の検知はないため、グラフはありません。" in shown
        assert "この期間の検知はありません。" in shown
    assert "<svg" not in html
    assert "前週より5件減りました" not in text  # previous_total defaults to 0 here
    assert "前週と同じ件数でした。" in text


def test_report_mail_subject_and_parts() -> None:
    mail = detection_report_mail(sample_report())
    assert mail.subject == (
        "【EDR体験】週次検知レポート（2026/11/01〜2026/11/07）株式会社アクメ&サンズ"
    )
    assert mail.html is not None and mail.html.startswith("<!DOCTYPE html>")
    assert "この期間のまとめ" in mail.text
    monthly = detection_report_mail(sample_report(kind="monthly"))
    assert "月次検知レポート" in monthly.subject and "前月より" in monthly.text


def test_english_company_gets_english_mail() -> None:
    mail = detection_report_mail(sample_report("en"))
    assert mail.subject == (
        "[EDR trial] Weekly detection report (01 Nov 2026 – 07 Nov 2026) 株式会社アクメ&サンズ"
    )
    assert mail.html is not None and '<html lang="en">' in mail.html
    for heading in EN_HEADINGS:
        assert heading in mail.text and heading in mail.html
    assert "Attn: 山田 太郎" in mail.text
    assert "3 fewer than the previous week (5)." in mail.text
    assert "Your free trial ends on 31 Dec 2026 (52 days left)." in mail.text
    # No Japanese sentence of the report's own wording is left in the English mail.
    for ja in ("この期間", "重要度", "お願い", "端末", "様", "：", "（"):
        assert ja not in mail.text and ja not in mail.html
