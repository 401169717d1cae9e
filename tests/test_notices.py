"""Notices for a new ticket: the company's (ja / en, plain, nothing internal) and the desk's."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from edrtrial.config import DeskConfig
from edrtrial.coverage import Clock, coverage_at
from edrtrial.models import Alert, Company, Ticket, Trial
from edrtrial.notify.notices import DeskFacts, company_alert_notice, desk_ticket_notice

DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
ALERT_URL = "https://security.microsoft.com/alerts/da637-secret-alert-id"

# The company is in its trial when these mails are written (its tickets' 24-hour clock).
TRIAL = Trial(starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30), decision="undecided")
IN_TRIAL = coverage_at(TRIAL, datetime(2026, 11, 7, 15, 31, tzinfo=UTC))
FACTS = DeskFacts(IN_TRIAL, Clock.INCIDENT_DESK)


def company(language: str = "ja") -> Company:
    return Company(
        id=3,
        key="acme",
        name="株式会社アクメ",
        contact_name="山田 太郎",
        contact_email="yamada@example.jp",
        language=language,
    )


def ticket() -> Ticket:
    return Ticket(
        id=41,
        tenant_id=5,
        correlation_key="incident:mde:99",
        priority="P1",
        state="new",
        title="Ransomware on pc-01",
        created_at=datetime(2026, 11, 7, 15, 31, tzinfo=UTC),
    )


def alerts() -> list[Alert]:
    return [
        Alert(
            id=2,
            tenant_id=5,
            source="mde",
            source_id="da637-secret-alert-id",
            incident_source_id="99",
            title="Ransomware behavior detected",
            severity="High",
            category="Ransomware",
            status="New",
            detection_source="WindowsDefenderAtp",
            mitre_techniques=["T1486", "T1490"],
            device_source_ids=["machine-guid-0001"],
            device_names=["pc-01"],
            matched_rules=["ransomware-high"],
            created_at=datetime(2026, 11, 7, 15, 30, tzinfo=UTC),
            raw={
                "alertWebUrl": ALERT_URL,
                "incidentWebUrl": "https://security.microsoft.com/incidents/99",
            },
        ),
        Alert(
            id=1,
            tenant_id=5,
            source="mde",
            source_id="da637-other-id",
            incident_source_id="99",
            title="Suspicious credential access",
            severity="Medium",
            category="CredentialAccess",
            status="New",
            device_source_ids=["machine-guid-0002"],
            device_names=["pc-02"],
            created_at=datetime(2026, 11, 7, 15, 10, tzinfo=UTC),
        ),
    ]


def test_japanese_company_notice_is_plain_and_actionable() -> None:
    mail = company_alert_notice(company(), ticket(), alerts(), DESK, IN_TRIAL)
    assert mail.subject == (
        "【EDR体験・重要】貴社のパソコンで不審な動きを検知しました（受付番号 #41）"
    )
    assert mail.html is None
    text = mail.text
    for expected in (
        "株式会社アクメ",
        "山田 太郎 様",
        "日時：2026/11/08 00:30（日本時間）",
        "端末：pc-01",
        "内容：ランサムウェア（データを暗号化して身代金を要求するウイルス）",
        "重要度：高",
        "日時：2026/11/08 00:10（日本時間）",
        "パスワードなどのログイン情報を盗もうとする動き",
        "インシデント対応窓口（24時間・休日も対応）",
        "端末の隔離",
        "電源を切ったり、再起動したりしないでください",
        "再インストール",
        "受付番号 #41",
        "03-1111-1111",
        "03-0000-0000",
        "desk@example.jp",
    ):
        assert expected in text, expected
    # Earliest detection first, so the story reads in order.
    assert text.index("端末：pc-02") < text.index("端末：pc-01")
    # Nothing the reader cannot use: no Microsoft ids, URLs, MITRE codes or rule names.
    for internal in (
        "da637",
        "machine-guid",
        "security.microsoft.com",
        "T1486",
        "ransomware-high",
        "Ransomware behavior detected",
        "incident:mde",
    ):
        assert internal not in text, internal


def test_english_company_notice() -> None:
    mail = company_alert_notice(company("en"), ticket(), alerts()[:1], DESK, IN_TRIAL)
    assert mail.subject.startswith("[EDR trial - important]") and "#41" in mail.subject
    for expected in (
        "Dear 山田 太郎,",
        "When: 2026/11/08 00:30 (Japan time)",
        "Computer: pc-01",
        "Ransomware (a virus that encrypts data",
        "Severity: High",
        "Do not switch off or restart this computer",
        "device isolation",
        "Incident desk (24 hours, holidays included): 03-1111-1111",
    ):
        assert expected in mail.text, expected
    assert "da637" not in mail.text and "重要度" not in mail.text


def test_notice_refuses_alerts_of_another_tenant() -> None:
    stranger = Alert(
        id=9,
        tenant_id=6,
        source="mde",
        source_id="x",
        title="other company",
        device_names=["their-pc"],
        created_at=datetime(2026, 11, 7, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="do not belong"):
        company_alert_notice(company(), ticket(), [*alerts(), stranger], DESK, IN_TRIAL)
    with pytest.raises(ValueError, match="do not belong"):
        desk_ticket_notice(company(), ticket(), [stranger], FACTS)


def test_desk_notice_carries_the_evidence() -> None:
    mail = desk_ticket_notice(company(), ticket(), alerts(), FACTS)
    assert mail.subject == "[P1] 新規チケット #41 株式会社アクメ：Ransomware on pc-01"
    text = mail.text
    for expected in (
        "企業：株式会社アクメ（acme）",
        "山田 太郎 <yamada@example.jp>",
        "チケット：#41　優先度：P1",
        "起票：2026/11/08 00:31（JST）",
        "インシデントID：99",
        "https://security.microsoft.com/incidents/99",
        "重要度 高 / Ransomware / Ransomware behavior detected",
        "日時：2026/11/08 00:30（JST）",
        "端末：pc-01 (machine-guid-0001)",
        "MITRE：T1486, T1490",
        "検知元：WindowsDefenderAtp",
        "アラートID：mde:da637-secret-alert-id",
        f"URL：{ALERT_URL}",
        "一致したルール：ransomware-high",
        "アラート（2件）",
    ):
        assert expected in text, expected


def test_english_notice_after_the_trial_is_english_and_promises_business_hours() -> None:
    ended = coverage_at(TRIAL, datetime(2026, 12, 1, 14, 0, tzinfo=UTC))  # 23:00 JST
    text = company_alert_notice(company("en"), ticket(), alerts()[:1], DESK, ended).text
    assert "Incident desk (平日 9:00〜17:00): 03-1111-1111" in text
    assert "As your free trial has ended, a detection that arrives outside" in text
    assert "24 hours" not in text and "holidays included" not in text
    leftover = text
    for name in ("株式会社アクメ", "山田 太郎", DESK.name, DESK.hours):
        leftover = leftover.replace(name, "")
    assert not re.findall(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+", leftover)
