"""The incident report a company receives when its ticket is resolved (ja / en, text and HTML)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from jinja2 import StrictUndefined, UndefinedError

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.coverage import coverage_at
from edrtrial.models import Alert, Company, Device, ResponseAction, Tenant, Ticket, Trial
from edrtrial.reports.incident import (
    WORDS,
    assemble_incident_report,
    incident_report_mail,
    incident_report_pdf,
)
from edrtrial.reports.render import environment, render

DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
# The company is still in its trial when the report is written.
TRIAL = Trial(starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30), decision="undecided")
IN_TRIAL = coverage_at(TRIAL, datetime(2026, 11, 9, 1, 0, tzinfo=UTC))
JA_HEADINGS = ("発生日時", "インシデント内容", "インシデントの原因", "対応方法", "対応の効果")
EN_HEADINGS = (
    "When it happened",
    "What happened",
    "Cause",
    "How it was handled",
    "Effect of the handling",
)
SUMMARY_JA = {
    "when": "2026/11/08 00:30ごろ（経理部の始業前）",
    "what": "経理部のパソコン PC-KEIRI-01 で、ファイルを暗号化しようとする動きを検知しました。\n"
    "<script>alert('x')</script> という文字列を含む添付ファイルでした。",
    "cause": "請求書を装ったメールの添付ファイル（Excel）を開いたことです。",
    "handling": "端末をネットワークから隔離し、不審なファイルを削除しました。",
    "effect": "暗号化されたファイルはなく、ほかの端末への広がりもありません。",
}
SUMMARY_EN = {
    "when": "Around 00:30 on 8 November 2026",
    "what": "Something tried to encrypt files on PC-KEIRI-01 <b>bold</b>.",
    "cause": "An Excel attachment in an e-mail pretending to be an invoice was opened.",
    "handling": "The computer was isolated and the malicious file removed.",
    "effect": "No file was encrypted and nothing spread to other computers.",
}


def company(language: str = "ja") -> Company:
    return Company(
        id=3,
        key="acme",
        name="株式会社アクメ",
        contact_name="山田 太郎",
        contact_email="yamada@example.jp",
        language=language,
    )


def ticket(summary: dict[str, str] | None = None) -> Ticket:
    return Ticket(
        id=12,
        tenant_id=5,
        correlation_key="incident:99",
        priority="P1",
        state="resolved",
        title="Ransomware on PC-KEIRI-01",
        created_at=datetime(2026, 11, 7, 15, 31, tzinfo=UTC),
        resolved_at=datetime(2026, 11, 9, 1, 0, tzinfo=UTC),
        summary=dict(SUMMARY_JA if summary is None else summary),
    )


def alerts(tenant_id: int = 5) -> list[Alert]:
    return [
        Alert(
            id=2,
            tenant_id=tenant_id,
            source="mde",
            source_id="da637-secret",
            incident_source_id="99",
            title="Ransomware behavior detected",
            severity="High",
            category="Ransomware",
            device_source_ids=["guid-1"],
            device_names=["PC-KEIRI-01"],
            ticket_id=12,
            created_at=datetime(2026, 11, 7, 15, 30, tzinfo=UTC),
        ),
        Alert(
            id=1,
            tenant_id=tenant_id,
            source="mde",
            source_id="da637-other",
            incident_source_id="99",
            title="Suspicious Office macro",
            severity="Medium",
            category="InitialAccess",
            device_source_ids=["guid-1"],
            device_names=["PC-KEIRI-01"],
            ticket_id=12,
            created_at=datetime(2026, 11, 7, 15, 20, tzinfo=UTC),
        ),
    ]


def device(name: str = "PC-KEIRI-01", device_id: int = 7, tenant_id: int = 5) -> Device:
    return Device(id=device_id, tenant_id=tenant_id, source_id=f"guid-{device_id}", name=name)


def action(
    kind: str = "isolate",
    status: str = "succeeded",
    *,
    action_id: int = 1,
    device_id: int = 7,
    minute: int = 42,
    tenant_id: int = 5,
    ticket_id: int | None = 12,
) -> ResponseAction:
    at = datetime(2026, 11, 7, 15, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return ResponseAction(
        id=action_id,
        dedupe_key=f"{kind}:{action_id}",
        tenant_id=tenant_id,
        device_id=device_id,
        ticket_id=ticket_id,
        kind=kind,
        status=status,
        created_at=at - timedelta(minutes=2),
        updated_at=at,
    )


def isolated() -> list[tuple[ResponseAction, Device]]:
    return [(action(), device())]


def test_japanese_report_has_the_programme_record_and_the_facts() -> None:
    mail = incident_report_mail(company(), ticket(), alerts(), isolated(), DESK, IN_TRIAL)
    assert mail.subject == "【EDR体験】インシデント対応のご報告（受付番号 #12）"
    text = mail.text
    for expected in (
        "株式会社アクメ",
        "山田 太郎 様",
        "受付番号 #12",
        "対応完了：2026/11/09 10:00（日本時間）",
        *(f"【{h}】" for h in JA_HEADINGS),
        SUMMARY_JA["when"],
        *SUMMARY_JA["what"].split("\n"),
        "請求書を装ったメールの添付ファイル（Excel）を開いたことです。",
        "暗号化されたファイルはなく、ほかの端末への広がりもありません。",
        "対象の端末：PC-KEIRI-01",
        "2026/11/08 00:20（日本時間）",
        "2026/11/08 00:30（日本時間）",
        "ランサムウェア（データを暗号化して身代金を要求するウイルス）",
        "重要度：高",
        "2026/11/08 00:42（日本時間）  PC-KEIRI-01：ネットワークからの隔離（結果：完了）",
        "「PC-KEIRI-01」は、現在もネットワークから隔離されています",
        "インシデント対応窓口が遠隔で行い",
        "心当たりのないメールの添付ファイル",  # an initial-access detection
        "インシデント対応窓口（24時間・休日も対応）：03-1111-1111",
        "EDR体験 運営事務局（平日 9:00〜17:00）：03-0000-0000　desk@example.jp",
    ):
        assert expected in text, expected
    # The five parts in the programme's order, the operator's words under each heading.
    positions = [text.index(f"【{h}】") for h in JA_HEADINGS]
    assert positions == sorted(positions)
    assert (
        text.index("【インシデントの原因】")
        < text.index("請求書を装った")
        < text.index("【対応方法】")
    )
    # Earliest detection first; nothing internal.
    assert text.index("00:20（日本時間）") < text.index("00:30（日本時間）")
    for internal in ("da637", "guid-", "Ransomware behavior detected", "incident:99"):
        assert internal not in text, internal
    for english in (*EN_HEADINGS, "Incident desk", "ticket #", "Japan time"):
        assert english not in text, english


def test_english_report_has_no_japanese_headings() -> None:
    mail = incident_report_mail(
        company("en"), ticket(SUMMARY_EN), alerts(), isolated(), DESK, IN_TRIAL
    )
    assert mail.subject == "[EDR trial] Incident report (ticket #12)"
    assert mail.html is not None
    for expected in (
        "Dear 山田 太郎,",
        "ticket #12",
        "Handling completed: 2026/11/09 10:00 (Japan time)",
        *(f"* {h}" for h in EN_HEADINGS),
        *SUMMARY_EN.values(),
        "Affected computers: PC-KEIRI-01",
        "2026/11/08 00:30 (Japan time)",
        "Ransomware (a virus that encrypts data",
        "Severity: High",
        "PC-KEIRI-01: Isolated from the network (Result: Done)",
        "PC-KEIRI-01 is still isolated from the network",
        "Incident desk (24 hours, holidays included): 03-1111-1111",
        "desk@example.jp",
    ):
        assert expected in mail.text, expected
    # Only the company's and the desk's own names may be Japanese.
    for part in (mail.text, mail.html):
        leftover = part.replace("株式会社アクメ", "").replace("山田 太郎", "")
        leftover = leftover.replace(DESK.name, "").replace(DESK.hours, "")
        leftover = re.sub(r"font-family:[^;]*;", "", leftover)
        japanese = re.findall(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+", leftover)
        assert japanese == [], japanese


def test_html_part_escapes_the_operator_text() -> None:
    mail = incident_report_mail(company(), ticket(), alerts(), isolated(), DESK, IN_TRIAL)
    assert mail.html is not None
    html = mail.html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    for heading in JA_HEADINGS:
        assert f'scope="row">{heading}</th>' in html
    for expected in (
        "山田 太郎 様",
        "受付番号 #12",
        "PC-KEIRI-01",
        "2026/11/08 00:42",
        "ネットワークからの隔離",
        "03-1111-1111",
        "mailto:desk@example.jp",
        "white-space:pre-wrap",
    ):
        assert expected in html, expected
    english = incident_report_mail(
        company("en"), ticket(SUMMARY_EN), alerts(), isolated(), DESK, IN_TRIAL
    )
    assert english.html is not None
    assert "<b>bold</b>" not in english.html and "&lt;b&gt;bold&lt;/b&gt;" in english.html
    assert '<html lang="en">' in english.html


def test_another_tenants_alert_or_action_is_refused() -> None:
    with pytest.raises(ValueError, match="do not belong"):
        incident_report_mail(
            company(), ticket(), [*alerts(), *alerts(tenant_id=6)], isolated(), DESK, IN_TRIAL
        )
    foreign = [(action(tenant_id=6), device(tenant_id=6))]
    with pytest.raises(ValueError, match="do not belong"):
        incident_report_mail(company(), ticket(), alerts(), foreign, DESK, IN_TRIAL)
    with pytest.raises(ValueError, match="tenant 6"):
        incident_report_mail(
            company(), ticket(), alerts(), [(action(), device(tenant_id=6))], DESK, IN_TRIAL
        )
    with pytest.raises(ValueError, match="ticket 99"):
        incident_report_mail(
            company(), ticket(), alerts(), [(action(ticket_id=99), device())], DESK, IN_TRIAL
        )
    with pytest.raises(ValueError, match="not 8"):
        incident_report_mail(
            company(), ticket(), alerts(), [(action(), device(device_id=8))], DESK, IN_TRIAL
        )


def test_company_of_another_tenant_is_refused() -> None:
    stranger = company()
    stranger.tenant = Tenant(id=6, company_id=3, connector="defender", external_id="t-other")
    with pytest.raises(ValueError, match="not ticket 12's tenant"):
        incident_report_mail(stranger, ticket(), alerts(), isolated(), DESK, IN_TRIAL)
    own = company()
    own.tenant = Tenant(id=5, company_id=3, connector="defender", external_id="t-acme")
    assert (
        "受付番号 #12"
        in incident_report_mail(own, ticket(), alerts(), isolated(), DESK, IN_TRIAL).text
    )


@pytest.mark.parametrize("missing", ["when", "what", "cause", "handling", "effect"])
def test_the_report_needs_all_five_parts(missing: str) -> None:
    summary = dict(SUMMARY_JA)
    del summary[missing]
    with pytest.raises(ValueError, match=f"lacks: {missing}"):
        incident_report_mail(company(), ticket(summary), alerts(), isolated(), DESK, IN_TRIAL)
    summary[missing] = "  \n "
    with pytest.raises(ValueError, match=missing):
        incident_report_mail(company(), ticket(summary), alerts(), isolated(), DESK, IN_TRIAL)


def test_a_missing_template_field_fails_the_render() -> None:
    assert environment().undefined is StrictUndefined
    report = assemble_incident_report(company(), ticket(), alerts(), isolated(), DESK, IN_TRIAL)
    words = {k: v for k, v in WORDS["ja"].items() if k != "h_todo"}
    for template in ("incident_report.txt.j2", "incident_report.html.j2"):
        with pytest.raises(UndefinedError):
            render(template, r=report, w=words)
    assert set(WORDS["ja"]) == set(WORDS["en"])


def test_released_device_reads_as_usable_and_failures_are_said_plainly() -> None:
    released = [
        (action(minute=42), device()),
        (action("release", "succeeded", action_id=2, minute=300), device()),
    ]
    text = incident_report_mail(company(), ticket(), alerts(), released, DESK, IN_TRIAL).text
    assert "「PC-KEIRI-01」の隔離は解除済みで、ふだんどおりお使いいただけます。" in text
    assert "現在もネットワークから隔離されています" not in text
    assert text.index("ネットワークからの隔離（結果：完了）") < text.index(
        "隔離の解除（結果：完了）"
    )
    assert "2026/11/08 05:00（日本時間）  PC-KEIRI-01：隔離の解除" in text

    stuck = [
        (action(minute=42), device()),
        (action("release", "failed", action_id=2, minute=300), device()),
    ]
    text = incident_report_mail(company(), ticket(), alerts(), stuck, DESK, IN_TRIAL).text
    assert "隔離の解除（結果：できませんでした）" in text
    assert "「PC-KEIRI-01」は、現在もネットワークから隔離されています" in text

    failed = [
        (action("isolate", "failed"), device()),
        (
            action("isolate", "succeeded", action_id=3, device_id=8, minute=50),
            device("PC-SOUMU-02", device_id=8),
        ),
    ]
    mail = incident_report_mail(company("en"), ticket(SUMMARY_EN), alerts(), failed, DESK, IN_TRIAL)
    assert "PC-KEIRI-01 could not be isolated remotely" in mail.text
    assert "PC-SOUMU-02 is still isolated" in mail.text
    assert "Affected computers: PC-KEIRI-01, PC-SOUMU-02" in mail.text
    assert mail.html is not None and "color:#b42318;font-weight:bold;" in mail.html

    pending = [(action("release", "pending"), device())]
    text = incident_report_mail(company(), ticket(), alerts(), pending, DESK, IN_TRIAL).text
    assert "「PC-KEIRI-01」は、隔離を解除しているところです" in text
    assert "隔離の解除（結果：実行中）" in text


def test_no_actions_and_no_device_names() -> None:
    nameless = [
        Alert(
            id=5,
            tenant_id=5,
            source="mde",
            source_id="x",
            title="Odd thing",
            severity="Low",
            category="Discovery",
            device_names=[],
            created_at=datetime(2026, 11, 7, 15, 0, tzinfo=UTC),
        )
    ]
    mail = incident_report_mail(company(), ticket(), nameless, [], DESK, IN_TRIAL)
    assert "端末の隔離などの操作は行っていません。" in mail.text
    assert "端末：（端末名なし）" in mail.text
    assert "対象の端末：（端末の特定はありません）" in mail.text
    assert "現在もネットワークから隔離" not in mail.text
    assert "電源を切らずに、受付番号 #12 をお伝えのうえ" in mail.text
    empty = incident_report_mail(company("en"), ticket(SUMMARY_EN), [], [], DESK, IN_TRIAL)
    assert "No detection is linked to this case." in empty.text
    assert "No computer was isolated" in empty.text


def test_many_detections_are_counted_not_listed() -> None:
    many = [
        Alert(
            id=100 + i,
            tenant_id=5,
            source="mde",
            source_id=f"a{i}",
            title="x",
            severity="Low",
            category="Malware",
            device_names=[f"PC-{i:02d}"],
            created_at=datetime(2026, 11, 7, 10, i, tzinfo=UTC),
        )
        for i in range(25)
    ]
    mail = incident_report_mail(company(), ticket(), many, [], DESK, IN_TRIAL)
    assert "・ほか 5 件" in mail.text
    assert "PC-19" in mail.text and "端末：PC-20" not in mail.text
    assert "PC-24" in mail.text  # still named among the affected devices
    assert mail.html is not None and "ほか 5 件" in mail.html


def test_an_unconfirmed_proposal_is_not_reported_as_an_action() -> None:
    proposed = [(action("isolate", "proposed"), device())]
    text = incident_report_mail(company(), ticket(), alerts(), proposed, DESK, IN_TRIAL).text
    assert "端末の隔離などの操作は行っていません。" in text
    assert "隔離されています" not in text and "実行中" not in text
    with pytest.raises(ValueError, match="do not belong"):  # still checked, even if not shown
        incident_report_mail(
            company(),
            ticket(),
            alerts(),
            [(action("isolate", "proposed", tenant_id=6), device())],
            DESK,
            IN_TRIAL,
        )


@pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (make test installs it)"
)
def test_the_printed_report_has_the_shared_letterhead_one_contact_line_a_line(
    tmp_path: Path,
) -> None:
    """The incident report prints in the layout every report shares: the secretariat's
    contact lines each on a line of their own (not joined with a line-break mark), the time
    it was made, "n / N" at the foot of each page."""
    programme = ProgrammeConfig(
        name="東京都中小企業サイバーセキュリティ基本対策事業",
        secretariat="EDR体験 運営事務局",
        secretariat_contact="東京都千代田区丸の内1-1-1\nTEL 03-0000-0000",
    )
    report = assemble_incident_report(company(), ticket(), alerts(), isolated(), DESK, IN_TRIAL)
    pdf = incident_report_pdf(report, programme, generated_at=datetime(2026, 11, 9, 1, tzinfo=UTC))
    path = tmp_path / "incident.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    lines = [line.strip() for line in text.splitlines()]
    assert "\u240a" not in text
    assert any(line.endswith("東京都千代田区丸の内1-1-1") for line in lines)
    assert any(line.endswith("TEL 03-0000-0000") for line in lines)
    assert "作成日時：2026/11/09 10:00（日本時間）" in lines
    pages = text.count("\f")
    numbers = [tuple(map(int, n)) for n in re.findall(r"(\d+)\s*/\s*(\d+)\s*\f", text)]
    assert numbers == [(n, pages) for n in range(1, pages + 1)]
