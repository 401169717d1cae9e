"""The desk workflow's mails: isolation notices, operator messages, escalations, ticket updates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from edrtrial.config import DeskConfig
from edrtrial.coverage import Clock, coverage_at
from edrtrial.models import Alert, Company, Device, ResponseAction, Tenant, Ticket, Trial
from edrtrial.notify.escalation_group import EscalatedTicket, desk_escalation_group_notice
from edrtrial.notify.notices import (
    DeskFacts,
    company_message,
    desk_escalation_notice,
    desk_ticket_update_notice,
    isolation_notice,
)

DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
DEADLINE = datetime(2026, 11, 7, 15, 46, tzinfo=UTC)  # 2026/11/08 00:46 JST
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


def ticket(state: str = "new") -> Ticket:
    return Ticket(
        id=41,
        tenant_id=5,
        correlation_key="incident:99",
        priority="P1",
        state=state,
        title="Ransomware on PC-KEIRI-01",
        created_at=datetime(2026, 11, 7, 15, 31, tzinfo=UTC),
        ack_due_at=DEADLINE,
    )


def device(tenant_id: int = 5) -> Device:
    return Device(id=7, tenant_id=tenant_id, source_id="machine-guid-0001", name="PC-KEIRI-01")


def action(kind: str = "isolate", status: str = "succeeded", tenant_id: int = 5) -> ResponseAction:
    return ResponseAction(
        id=1,
        dedupe_key="isolate:7:41",
        tenant_id=tenant_id,
        device_id=7,
        ticket_id=41,
        kind=kind,
        status=status,
        created_at=datetime(2026, 11, 7, 15, 38, tzinfo=UTC),
        updated_at=datetime(2026, 11, 7, 15, 40, tzinfo=UTC),
    )


def alert(i: int, severity: str = "High", tenant_id: int = 5) -> Alert:
    return Alert(
        id=i,
        tenant_id=tenant_id,
        source="mde",
        source_id=f"da637-{i}",
        incident_source_id="99",
        title=f"Alert number {i}",
        severity=severity,
        category="Ransomware",
        device_source_ids=["machine-guid-0001"],
        device_names=["PC-KEIRI-01"],
        created_at=datetime(2026, 11, 7, 15, 0, tzinfo=UTC) + timedelta(minutes=i),
        raw={"incidentWebUrl": "https://security.microsoft.com/incidents/99"},
    )


def japanese_outside_names(text: str) -> list[str]:
    for name in ("株式会社アクメ", "山田 太郎", DESK.name, DESK.hours):
        text = text.replace(name, "")
    return re.findall(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+", text)


CONTACTS = ("03-1111-1111", "03-0000-0000", "desk@example.jp")

# (kind, status) -> what the Japanese and English mails must say.
ISOLATION_CASES = {
    ("isolate", "succeeded"): (
        "パソコン「PC-KEIRI-01」をネットワークから隔離しました",
        (
            "ネットワークから遠隔で切り離しました（端末の隔離）",
            "日時：2026/11/08 00:40（日本時間）",
            "インターネットにも社内のネットワークにもつながりません",
            "ほかのパソコンは、ふだんどおり使えます",
            "電源を切ったり、再起動したりしないでください",
            "窓口が隔離を解除し",
        ),
        "Computer PC-KEIRI-01 was isolated from the network",
        (
            "cannot reach the internet or your office network",
            "other computers keep working",
            "Do not switch off or restart",
            "the desk releases it",
            "When: 2026/11/08 00:40",
        ),
    ),
    ("isolate", "pending"): (
        "ネットワークから隔離しています",
        (
            "切り離す操作を始めました",
            "次に電源を入れたときに隔離されます",
            "日時：2026/11/08 00:38（日本時間）",
            "電源を切ったり",
        ),
        "is being isolated",
        ("started to disconnect", "the next time it is switched on", "When: 2026/11/08 00:38"),
    ),
    ("isolate", "failed"): (
        "遠隔で隔離できませんでした",
        (
            "できませんでした",
            "LANケーブルを抜いてください",
            "Wi-Fiをオフに",
            "電源は切らないでください",
            "お電話でご連絡します",
        ),
        "could not be isolated",
        (
            "could not",
            "Unplug the computer's network (LAN) cable",
            "turn Wi-Fi off",
            "Do not switch it off",
            "will call you",
        ),
    ),
    ("release", "succeeded"): (
        "【EDR体験】パソコン「PC-KEIRI-01」の隔離を解除しました",
        (
            "隔離を解除しました",
            "ふだんどおりインターネットや社内のネットワークを使えます",
            "特別な操作は必要ありません",
        ),
        "[EDR trial] Computer PC-KEIRI-01 was released from isolation",
        ("released from isolation", "Nothing needs to be done on your side"),
    ),
    ("release", "inprogress"): (
        "隔離を解除しています",
        ("解除する操作を始めました", "1時間ほどたっても"),
        "is being released",
        ("started to release", "after about an hour"),
    ),
    ("release", "timeout"): (
        "隔離を解除できませんでした",
        (
            "遠隔で解除できませんでした",
            "まだインターネットや社内のネットワークにつながりません",
            "電源を入れて、そのままにしておいてください",
        ),
        "could not be released",
        ("could not release", "still cannot reach", "switch it on and leave it on"),
    ),
}


@pytest.mark.parametrize(("kind", "status"), list(ISOLATION_CASES))
def test_isolation_notice_in_both_languages(kind: str, status: str) -> None:
    ja_subject, ja_lines, en_subject, en_lines = ISOLATION_CASES[(kind, status)]
    ja = isolation_notice(company(), ticket(), device(), action(kind, status), DESK, IN_TRIAL)
    assert ja_subject in ja.subject and ja.subject.endswith("（受付番号 #41）")
    assert ja.html is None
    for expected in (
        *ja_lines,
        "株式会社アクメ",
        "山田 太郎 様",
        "端末：PC-KEIRI-01",
        "受付番号 #41",
        *CONTACTS,
    ):
        assert expected in ja.text, expected
    assert "machine-guid" not in ja.text and "Computer" not in ja.text

    en = isolation_notice(company("en"), ticket(), device(), action(kind, status), DESK, IN_TRIAL)
    assert en_subject in en.subject and en.subject.endswith("(ticket #41)")
    for expected in (
        *en_lines,
        "Dear 山田 太郎,",
        "Computer: PC-KEIRI-01",
        "ticket #41",
        "Incident desk (24 hours, holidays included): 03-1111-1111",
        *CONTACTS,
    ):
        assert expected in en.text, expected
    assert japanese_outside_names(en.subject + en.text) == []


def test_isolation_notice_refuses_other_tenants_and_other_actions() -> None:
    with pytest.raises(ValueError, match="do not belong"):
        isolation_notice(company(), ticket(), device(tenant_id=6), action(), DESK, IN_TRIAL)
    with pytest.raises(ValueError, match="do not belong"):
        isolation_notice(company(), ticket(), device(), action(tenant_id=6), DESK, IN_TRIAL)
    with pytest.raises(ValueError, match="not an isolation"):
        isolation_notice(company(), ticket(), device(), action("av_scan"), DESK, IN_TRIAL)
    stranger = company()
    stranger.tenant = Tenant(id=6, company_id=3, connector="defender", external_id="t-x")
    with pytest.raises(ValueError, match="not ticket 41's tenant"):
        isolation_notice(stranger, ticket(), device(), action(), DESK, IN_TRIAL)


def test_nameless_device_is_not_shown_by_its_edr_id() -> None:
    nameless = Device(id=7, tenant_id=5, source_id="machine-guid-0001", name="")
    mail = isolation_notice(company(), ticket(), nameless, action(), DESK, IN_TRIAL)
    assert "端末：（端末名なし）" in mail.text and "machine-guid" not in mail.text


def test_company_message_wraps_the_operators_words() -> None:
    words = "本日15時ごろ、担当の佐藤からお電話します。\r\n\r\n端末はそのままにしてください。  "
    ja = company_message(company(), ticket(), words, DESK, IN_TRIAL)
    assert ja.subject == "【EDR体験】受付番号 #41 についてのご連絡"
    assert ja.html is None
    for expected in (
        "株式会社アクメ\n山田 太郎 様",
        "EDR体験の運営事務局です。",
        "本日15時ごろ、担当の佐藤からお電話します。\n\n端末はそのままにしてください。\n",
        "受付番号 #41 をお伝えのうえ",
        *CONTACTS,
    ):
        assert expected in ja.text, expected
    assert "\r" not in ja.text

    en = company_message(
        company("en"), ticket(), "We will call you at 15:00 today.", DESK, IN_TRIAL
    )
    assert en.subject == "[EDR trial] A message about ticket #41"
    for expected in (
        "Dear 山田 太郎,",
        "We will call you at 15:00 today.",
        "quote ticket #41",
        *CONTACTS,
    ):
        assert expected in en.text, expected
    assert japanese_outside_names(en.subject + en.text) == []

    with pytest.raises(ValueError, match="empty"):
        company_message(company(), ticket(), " \n ", DESK, IN_TRIAL)


def test_escalation_notice_says_not_acknowledged_and_what_to_do() -> None:
    mail = desk_escalation_notice(
        company(), ticket(), [alert(2, "Medium"), alert(1)], 2, DEADLINE, "oncall-teams", FACTS
    )
    assert mail.subject == (
        "[P1] 未確認・エスカレーション レベル2 #41 株式会社アクメ：Ransomware on PC-KEIRI-01"
    )
    text = mail.text
    assert text.startswith("■ 未確認（NOT ACKNOWLEDGED）— エスカレーション レベル 2\n")
    for expected in (
        "確認期限 2026/11/08 00:46（JST）までに確認されていません",
        "企業：株式会社アクメ（acme）",
        "山田 太郎 <yamada@example.jp>",
        "優先度：P1",
        "担当：未割当",
        "起票：2026/11/08 00:31（JST）",
        "通知先：oncall-teams",
        "https://security.microsoft.com/incidents/99",
        "アラート（2件）",
        "[1] 重要度 高 / Ransomware / Alert number 1",
        "日時：2026/11/08 00:01（JST）　端末：PC-KEIRI-01 (machine-guid-0001)",
        "edrtrial ticket ack 41",
    ):
        assert expected in text, expected
    assert text.index("Alert number 1") < text.index("Alert number 2")  # most severe first


def test_escalation_notice_stays_short_with_many_alerts() -> None:
    many = [alert(i, "Low") for i in range(1, 30)] + [alert(40, "High")]
    mail = desk_escalation_notice(company(), ticket(), many, 3, DEADLINE, "manager", FACTS)
    assert "アラート（30件、重要度の高い順に5件）" in mail.text
    assert "[1] 重要度 高 / Ransomware / Alert number 40" in mail.text
    assert "ほか 25 件" in mail.text
    assert len(mail.text.splitlines()) <= 30


def test_escalation_notice_refuses_other_tenants_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="do not belong"):
        desk_escalation_notice(
            company(), ticket(), [alert(1), alert(2, tenant_id=6)], 1, DEADLINE, "desk", FACTS
        )
    with pytest.raises(ValueError, match="level"):
        desk_escalation_notice(company(), ticket(), [alert(1)], 0, DEADLINE, "desk", FACTS)


def test_ticket_update_notice_for_a_reopened_ticket() -> None:
    reopened = ticket()
    reopened.reopened = 1
    reopened.resolved_at = datetime(2026, 11, 9, 1, 0, tzinfo=UTC)
    mail = desk_ticket_update_notice(
        company(), reopened, "reopened", "新しいアラート：Alert number 7（PC-KEIRI-01）", FACTS
    )
    assert mail.subject == "[P1] 再オープン #41 株式会社アクメ：Ransomware on PC-KEIRI-01"
    for expected in (
        "■ 解決済みのチケットが、新しいアラートで再オープンされました",
        "チケット #41　優先度：P1　状態：new",
        "企業：株式会社アクメ（acme）",
        "解決：2026/11/09 10:00（JST）",
        "再オープン：1回目",
        "新しいアラート：Alert number 7（PC-KEIRI-01）",
        "確認期限：2026/11/08 00:46（JST）",
        "edrtrial ticket ack 41",
    ):
        assert expected in mail.text, expected
    assert len(mail.text.splitlines()) <= 20


def test_ticket_update_notice_for_another_event() -> None:
    done = ticket("acknowledged")
    done.acknowledged_at = datetime(2026, 11, 7, 15, 40, tzinfo=UTC)
    mail = desk_ticket_update_notice(company(), done, "Customer called back", "", FACTS)
    assert mail.subject.startswith("[P1] Customer called back #41")
    assert "■ Customer called back" in mail.text
    assert "edrtrial ticket ack" not in mail.text  # already acknowledged
    with pytest.raises(ValueError, match="needs an event"):
        desk_ticket_update_notice(company(), done, " ", "detail", FACTS)


def test_isolation_notice_refuses_a_mere_proposal() -> None:
    with pytest.raises(ValueError, match="nothing to tell yet"):
        isolation_notice(
            company(), ticket(), device(), action("isolate", "proposed"), DESK, IN_TRIAL
        )
    sending = isolation_notice(
        company(), ticket(), device(), action("isolate", "sending"), DESK, IN_TRIAL
    )
    assert "隔離しています" in sending.subject


def test_desk_notices_carry_the_clock_the_ended_trial_and_the_device_actions() -> None:
    ended = coverage_at(TRIAL, datetime(2026, 12, 10, 1, 0, tzinfo=UTC))
    done = ticket("acknowledged")
    done.acknowledged_at = datetime(2026, 11, 7, 15, 40, tzinfo=UTC)
    moot = action("isolate", "superseded")
    moot.id = 2
    facts = DeskFacts(
        ended, Clock.BUSINESS, ((action("isolate", "failed"), device()), (moot, device()))
    )
    text = desk_ticket_update_notice(company(), done, "isolation_failed", "", facts).text
    for expected in (
        "確認期限：確認済み　時計：営業時間のみ（夜間・休日は数えない）",
        "無料体験：2026/11/30 に終了　継続の判断：未定（undecided）",
        "  #1 ネットワークからの隔離　PC-KEIRI-01 (machine-guid-0001)：失敗（failed）",
    ):
        assert expected in text, expected
    assert "#2 " not in text  # a proposal made moot by a planned isolation is not listed
    assert "edrtrial ticket isolate" not in text

    last = ticket()
    last.ack_due_at = None  # the last escalation level sets no further deadline
    text = desk_escalation_notice(company(), last, [alert(1)], 5, DEADLINE, "manager", facts).text
    assert "次の確認期限：なし　時計：営業時間のみ（夜間・休日は数えない）" in text


def test_a_desk_notice_refuses_a_device_action_of_another_ticket() -> None:
    stranger = action()
    stranger.ticket_id = 99
    facts = DeskFacts(IN_TRIAL, Clock.INCIDENT_DESK, ((stranger, device()),))
    with pytest.raises(ValueError, match="99"):
        desk_ticket_update_notice(company(), ticket(), "reopened", "", facts)


def test_a_grouped_escalation_refuses_another_tenants_ticket_alert_or_action() -> None:
    def entry(t: Ticket, alerts: tuple[Alert, ...], facts: DeskFacts = FACTS) -> EscalatedTicket:
        return EscalatedTicket(t, DEADLINE, alerts, facts)

    ours = entry(ticket(), (alert(1),))
    foreign = ticket()
    foreign.id, foreign.tenant_id = 42, 6
    stranger = action()
    stranger.ticket_id = 99
    cases = [
        entry(foreign, (alert(1, tenant_id=6),)),  # another company's ticket
        entry(ticket(), (alert(1), alert(2, tenant_id=6))),  # another tenant's alert
        entry(ticket(), (alert(1),), DeskFacts(IN_TRIAL, FACTS.clock, ((stranger, device()),))),
    ]
    for bad in cases:
        with pytest.raises(ValueError, match="tenant|belong|99"):
            desk_escalation_group_notice(company(), [ours, bad], 1, "duty")
    with pytest.raises(ValueError, match="level"):
        desk_escalation_group_notice(company(), [ours], 0, "duty")
    assert "#41　P1" in desk_escalation_group_notice(company(), [ours], 1, "duty").text
