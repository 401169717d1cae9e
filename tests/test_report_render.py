"""Rendering the detection report: Japanese sections in reading order, escaping, mail subject."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser

from edrtrial.config import DeskConfig
from edrtrial.coverage import coverage_at
from edrtrial.models import Trial
from edrtrial.reports.advice import recommendations_for, security_action
from edrtrial.reports.contacts import desk_contacts
from edrtrial.reports.detection import (
    DetectionReport,
    DetectionRow,
    DeviceSummary,
    QuietDevice,
    SeverityCount,
)
from edrtrial.reports.render import (
    detection_report_mail,
    render_detection_report_html,
    render_detection_report_text,
)

EVIL = "<script>alert('x')</script>"
DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
# The report is written on 2026/11/09, day 40 of a trial that runs to 2026/12/31.
TRIAL = Trial(starts_on=date(2026, 10, 1), ends_on=date(2026, 12, 31), decision="undecided")
IN_TRIAL = coverage_at(TRIAL, datetime(2026, 11, 9, 1, 0, tzinfo=UTC))
VOID = {"meta", "br", "img", "hr", "link", "input"}


def sample_report() -> DetectionReport:
    rows = (
        DetectionRow(
            at="2026/11/02 10:00",
            device="pc-01",
            title="EDRの動作確認テスト",
            source_title="[Test Alert] Suspicious Powershell commandline",
            severity_key="informational",
            severity="情報",
            outcome="動作確認テスト（対応不要）",
            is_test=True,
        ),
        DetectionRow(
            at="2026/11/05 12:00",
            device="pc-02",
            title="ランサムウェア",
            source_title=EVIL,
            severity_key="high",
            severity="高",
            outcome="対応中（受付番号 #7）",
            is_test=False,
        ),
    )
    return DetectionReport(
        company_key="acme",
        company_name="株式会社アクメ&サンズ",
        contact_name="山田 太郎",
        recipient="yamada@example.jp",
        tenant_id=1,
        start=date(2026, 11, 1),
        end=date(2026, 11, 7),
        period_label="2026/11/01〜2026/11/07",
        period_label_long="2026/11/01（日）〜2026/11/07（土）",
        generated_at="2026/11/09 09:00",
        trial_label="2026/10/01〜2026/12/31（残り52日）",
        total=2,
        tests=1,
        open_tickets=1,
        headline="この期間、EDRによる検知が2件ありました（うち動作確認テスト1件）。",
        severity_counts=(
            SeverityCount("high", "高", 1),
            SeverityCount("medium", "中", 0),
            SeverityCount("low", "低", 0),
            SeverityCount("informational", "情報", 1),
        ),
        detections=rows,
        omitted=0,
        devices=DeviceSummary(
            onboarded=12,
            active_recent=11,
            active_window_days=7,
            verified=10,
            with_detections=2,
            quiet=(QuietDevice("pc-09", "2026/10/20"),),
            quiet_more=0,
        ),
        recommendations=recommendations_for([]),
        security_action=security_action(),
        desk=desk_contacts(DESK, IN_TRIAL),
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

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_html_is_a_whole_japanese_document_in_reading_order() -> None:
    html = render_detection_report_html(sample_report())
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="ja">' in html and '<meta charset="utf-8">' in html
    positions = [
        html.index(s)
        for s in (
            "この期間のまとめ",
            "貴社にお願いしたいこと",
            "SECURITY ACTION 二つ星宣言",
            "検知の一覧",
            "しばらく確認できていない端末",
            "お問い合わせ",
        )
    ]
    assert positions == sorted(positions)
    for text in (
        "株式会社アクメ&amp;サンズ",
        "重要度 高",
        "パソコンや機器の更新（パッチ）",
        "動作確認テスト（対応不要）",
        "対応中（受付番号 #7）",
        "03-1111-1111",
        "desk@example.jp",
        "pc-09（最後の確認：2026/10/20）",
        "https://www.ipa.go.jp/security/security-action/",
    ):
        assert text in html, text
    # Mail clients drop external and embedded style sheets: every style is an attribute.
    assert "<link" not in html and "<style" not in html and 'style="' in html
    checker = _Balance()
    checker.feed(html)
    assert checker.errors == [] and checker.stack == []


def test_html_escapes_alert_titles() -> None:
    html = render_detection_report_html(sample_report())
    assert EVIL not in html and "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_text_part_has_the_same_sections_without_markup() -> None:
    text = render_detection_report_text(sample_report())
    for heading in (
        "■ 1. この期間のまとめ",
        "■ 2. 貴社にお願いしたいこと",
        "■ 3. 検知の一覧",
        "■ 4. しばらく確認できていない端末",
        "■ 5. お問い合わせ",
    ):
        assert heading in text
    assert "重要度別の件数：高 1件、中 0件、低 0件、情報 1件" in text
    assert f"EDRの表示名：{EVIL}" in text  # plain text is not HTML: shown as written
    assert "<td" not in text and "&amp;" not in text


def test_empty_period_says_so_and_numbers_the_contacts_section() -> None:
    quiet = replace(
        sample_report(),
        detections=(),
        total=0,
        tests=0,
        open_tickets=0,
        devices=replace(sample_report().devices, quiet=()),
    )
    text = render_detection_report_text(quiet)
    assert "この期間の検知はありません。" in text and "■ 4. お問い合わせ" in text
    assert "しばらく確認できていない端末" not in render_detection_report_html(quiet)


def test_report_mail_subject_and_parts() -> None:
    mail = detection_report_mail(sample_report())
    assert mail.subject == "【EDR体験】検知レポート（2026/11/01〜2026/11/07）株式会社アクメ&サンズ"
    assert mail.html is not None and mail.html.startswith("<!DOCTYPE html>")
    assert "この期間のまとめ" in mail.text
