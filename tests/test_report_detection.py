"""The detection report's data, assembled from stored rows and checked without rendering."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig, MailConfig, Settings
from edrtrial.errors import TenantMismatchError
from edrtrial.models import Alert, Company, Device, Tenant, Ticket, Trial
from edrtrial.notify.report_mail import detection_report_for
from edrtrial.reports.detection import DetectionReport, build_detection_report, period_kind

NOW = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)  # Monday 09:00 in Tokyo
START, END = date(2026, 11, 1), date(2026, 11, 7)
DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
SETTINGS = Settings(mail=MailConfig(from_address="reports@example.jp"), desk=DESK)


def add_company(session: Session, key: str, name: str) -> tuple[Company, Tenant]:
    company = Company(
        key=key, name=name, contact_name="山田 太郎", contact_email=f"contact@{key}.example.jp"
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="defender", external_id=f"tid-{key}")
    session.add(tenant)
    session.add(
        Trial(company_id=company.id, starts_on=date(2026, 10, 1), ends_on=date(2026, 12, 31))
    )
    session.flush()
    return company, tenant


def add_alert(
    session: Session, tenant: Tenant, source_id: str, created_at: datetime, **fields: Any
) -> Alert:
    values: dict[str, Any] = {
        "title": "Suspicious activity",
        "severity": "medium",
        "category": "SuspiciousActivity",
        "device_names": ["pc-01"],
        "device_source_ids": ["m-01"],
    }
    values.update(fields)
    alert = Alert(
        tenant_id=tenant.id, source="mde", source_id=source_id, created_at=created_at, **values
    )
    session.add(alert)
    session.flush()
    return alert


def add_ticket(session: Session, tenant: Tenant, key: str, state: str) -> Ticket:
    ticket = Ticket(tenant_id=tenant.id, correlation_key=key, title=key, priority="P1", state=state)
    session.add(ticket)
    session.flush()
    return ticket


def trial_of(session: Session, company: Company) -> Trial:
    return session.scalars(select(Trial).where(Trial.company_id == company.id)).one()


def assemble(
    session: Session, company: Company, start: date = START, end: date = END
) -> DetectionReport:
    return detection_report_for(session, company.id, start, end, now=NOW, settings=SETTINGS)


def test_another_company_rows_never_appear(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        ours, our_tenant = add_company(session, "ours", "株式会社こちら")
        theirs, their_tenant = add_company(session, "theirs", "株式会社あちら")
        add_alert(
            session,
            our_tenant,
            "o1",
            datetime(2026, 11, 2, 1, tzinfo=UTC),
            title="Our alert",
            severity="low",
        )
        add_alert(
            session,
            their_tenant,
            "t1",
            datetime(2026, 11, 2, 1, tzinfo=UTC),
            title="THEIR SECRET alert",
            severity="high",
            device_names=["their-pc"],
        )
        add_alert(
            session,
            their_tenant,
            "t2",
            datetime(2026, 11, 3, 1, tzinfo=UTC),
            title="THEIR other alert",
            severity="high",
            device_names=["their-pc"],
        )
        session.add(
            Device(
                tenant_id=their_tenant.id,
                source_id="their-m",
                name="their-pc",
                onboarding_status="Onboarded",
                in_inventory=True,
                last_seen=NOW,
            )
        )

        report = assemble(session, ours)

    assert [row.source_title for row in report.detections] == ["Our alert"]
    assert report.total == 1
    assert {s.key: s.count for s in report.severity_counts}["high"] == 0
    assert report.devices.onboarded == 0
    assert report.company_name == "株式会社こちら"
    assert report.recipient == "contact@ours.example.jp"
    shown = repr(report)
    assert "THEIR" not in shown and "their-pc" not in shown and "あちら" not in shown


def test_period_is_whole_tokyo_days(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        add_alert(session, tenant, "before", datetime(2026, 10, 31, 14, 59, 59, tzinfo=UTC))
        add_alert(session, tenant, "first", datetime(2026, 10, 31, 15, 0, tzinfo=UTC))
        add_alert(session, tenant, "last", datetime(2026, 11, 7, 14, 59, tzinfo=UTC))
        add_alert(
            session,
            tenant,
            "next-week",
            datetime(2026, 11, 7, 15, 30, tzinfo=UTC),
            title="After midnight in Tokyo",
        )

        week = assemble(session, company)
        following = assemble(session, company, date(2026, 11, 8), date(2026, 11, 9))

    assert [row.at for row in week.detections] == ["2026/11/01 00:00", "2026/11/07 23:59"]
    assert [(row.at, row.source_title) for row in following.detections] == [
        ("2026/11/08 00:30", "After midnight in Tokyo")
    ]
    assert week.period_label == "2026/11/01〜2026/11/07"
    assert week.period_label_long == "2026/11/01（日）〜2026/11/07（土）"


def test_rows_say_what_was_done_in_plain_words(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        open_ticket = add_ticket(session, tenant, "inc:1", "new")
        done_ticket = add_ticket(session, tenant, "inc:2", "resolved")
        at = datetime(2026, 11, 2, 0, tzinfo=UTC)
        # The test alert without its "[Test Alert]" prefix, known only by the playbook's reason.
        add_alert(
            session,
            tenant,
            "test",
            at,
            severity="informational",
            category="Execution",
            title="Suspicious PowerShell command line",
            suppressed_reason="detection-test",
        )
        add_alert(
            session,
            tenant,
            "ransom",
            at + timedelta(hours=1),
            severity="high",
            category="Ransomware",
            title="Ransomware behavior",
            ticket_id=open_ticket.id,
        )
        add_alert(
            session,
            tenant,
            "cred",
            at + timedelta(hours=2),
            severity="medium",
            category="CredentialAccess",
            title="Mimikatz",
            ticket_id=done_ticket.id,
        )
        add_alert(
            session,
            tenant,
            "noise",
            at + timedelta(hours=3),
            severity="informational",
            category="Discovery",
            suppressed_reason="benign_admin_tool",
            triaged_at=at + timedelta(hours=3),
        )

        report = assemble(session, company)

    rows = {row.source_title: row for row in report.detections}
    test_row = rows["Suspicious PowerShell command line"]
    assert test_row.outcome.startswith("動作確認テスト") and test_row.is_test
    # Received, nobody on it yet: not "対応中", which promises someone is working on it.
    assert (
        rows["Ransomware behavior"].outcome == f"受付済み・確認待ち（受付番号 #{open_ticket.id}）"
    )
    assert rows["Ransomware behavior"].severity == "高"
    assert rows["Ransomware behavior"].title.startswith("ランサムウェア")
    assert rows["Mimikatz"].outcome == f"対応済み（受付番号 #{done_ticket.id}）"
    assert rows["Mimikatz"].title == "パスワードなどのログイン情報を盗もうとする動き"
    assert "対応は不要" in rows["Suspicious activity"].outcome
    assert {s.label: s.count for s in report.severity_counts} == {
        "高": 1,
        "中": 1,
        "低": 0,
        "情報": 2,
    }
    assert (report.total, report.tests, report.open_tickets) == (4, 1, 1)
    assert (
        "4件" in report.verdict
        and "1件はインシデント対応窓口が受け付け、確認を待っています" in report.verdict
    )
    assert "対応中" not in report.verdict


def test_advice_follows_what_was_seen(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        quiet, quiet_tenant = add_company(session, "quiet", "株式会社しずか")
        add_alert(
            session,
            quiet_tenant,
            "test",
            datetime(2026, 11, 2, tzinfo=UTC),
            title="[Test Alert] Suspicious Powershell commandline",
            category="Execution",
        )
        add_alert(
            session,
            quiet_tenant,
            "eicar",
            datetime(2026, 11, 3, tzinfo=UTC),
            title="EICAR test file",
            category="Malware",
            suppressed_reason="test-file",
        )
        busy, busy_tenant = add_company(session, "busy", "株式会社いそがし")
        add_alert(
            session,
            busy_tenant,
            "p",
            datetime(2026, 11, 2, tzinfo=UTC),
            category="InitialAccess",
            title="Suspicious URL clicked",
        )
        add_alert(
            session,
            busy_tenant,
            "c",
            datetime(2026, 11, 3, tzinfo=UTC),
            category="CredentialAccess",
            title="Credential dumping",
        )
        ransom, ransom_tenant = add_company(session, "ransom", "株式会社らんさむ")
        add_alert(
            session,
            ransom_tenant,
            "r",
            datetime(2026, 11, 3, tzinfo=UTC),
            category="Ransomware",
            title="Ransomware behavior",
        )

        keys = {
            company.key: [rec.key for rec in assemble(session, company).recommendations]
            for company in (quiet, busy, ransom)
        }
        pointer = assemble(session, quiet).security_action

    assert keys["quiet"] == ["patches", "inventory"]
    assert keys["busy"] == ["mail", "passwords", "patches", "inventory"]
    assert keys["ransom"] == ["backup", "patches", "inventory"]
    assert "二つ星" in pointer.title and pointer.url.startswith("https://www.ipa.go.jp/")


def test_device_summary_counts_only_live_onboarded_devices(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        _, other = add_company(session, "other", "株式会社ほか")
        session.add_all(
            [
                Device(
                    tenant_id=tenant.id,
                    source_id="m1",
                    name="pc-01",
                    onboarding_status="Onboarded",
                    in_inventory=True,
                    last_seen=NOW - timedelta(days=1),
                    detection_test_at=datetime(2026, 10, 2, tzinfo=UTC),
                ),
                Device(
                    tenant_id=tenant.id,
                    source_id="m2",
                    name="pc-02",
                    onboarding_status="Onboarded",
                    in_inventory=True,
                    last_seen=NOW - timedelta(days=10),
                ),
                Device(
                    tenant_id=tenant.id,
                    source_id="m3",
                    name="pc-03",
                    onboarding_status="CanBeOnboarded",
                    in_inventory=True,
                    last_seen=NOW,
                ),
                Device(
                    tenant_id=tenant.id,
                    source_id="m4",
                    name="pc-04",
                    onboarding_status="Onboarded",
                    in_inventory=False,
                    last_seen=NOW,
                ),
                Device(
                    tenant_id=other.id,
                    source_id="x1",
                    name="other-pc",
                    onboarding_status="Onboarded",
                    in_inventory=True,
                    last_seen=NOW,
                ),
            ]
        )
        add_alert(
            session, tenant, "a", datetime(2026, 11, 2, tzinfo=UTC), device_names=["pc-01", "pc-02"]
        )
        report = assemble(session, company)

    devices = report.devices
    assert (devices.onboarded, devices.active_recent, devices.verified) == (2, 1, 1)
    assert devices.with_detections == 2
    assert [(q.name, q.last_seen) for q in devices.quiet] == [("pc-02", "2026/10/30")]
    assert report.trial_label == "2026/10/01〜2026/12/31（残り52日）"
    assert report.desk.urgent_phone == "03-1111-1111"


def test_company_without_tenant_gets_an_empty_report(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        company = Company(key="new", name="株式会社しんき", contact_email="a@example.jp")
        session.add(company)
        session.flush()
        report = assemble(session, company)
    assert report.total == 0 and report.detections == () and report.tenant_id is None
    assert report.verdict == "この期間、EDRによる検知はありませんでした。"


def test_rejects_unknown_company_and_reversed_period(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        company, _ = add_company(session, "acme", "株式会社アクメ")
        with pytest.raises(LookupError):
            detection_report_for(session, 9999, START, END, now=NOW, settings=SETTINGS)
        with pytest.raises(ValueError, match="before it starts"):
            assemble(session, company, END, START)


def test_the_view_refuses_rows_of_another_tenant_handed_to_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        ours, our_tenant = add_company(session, "ours", "株式会社こちら")
        _, their_tenant = add_company(session, "theirs", "株式会社あちら")
        stray = add_alert(session, their_tenant, "x1", NOW - timedelta(days=3))
        with pytest.raises(TenantMismatchError, match=f"alert {stray.id} do not belong to ours"):
            build_detection_report(
                ours, our_tenant.id, [stray], [], None, START, END, now=NOW, desk=DESK
            )


def test_in_progress_only_for_tickets_someone_works_on(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        at = datetime(2026, 11, 2, 0, tzinfo=UTC)
        for number, state in enumerate(("new", "acknowledged", "in_progress", "resolved")):
            ticket = add_ticket(session, tenant, f"inc:{state}", state)
            add_alert(session, tenant, state, at + timedelta(hours=number), ticket_id=ticket.id)
        report = assemble(session, company)

    states = {row.number: row.state for row in report.tickets}
    assert [row.outcome.split("（")[0] for row in report.detections] == [
        "受付済み・確認待ち",
        "対応中",
        "対応中",
        "対応済み",
    ]
    assert sorted(states.values()) == sorted(["確認待ち", "対応中", "対応中", "対応済み"])
    assert (report.open_tickets, report.worked_on) == (3, 2)
    assert "2件はインシデント対応窓口が対応中です。" in report.verdict
    assert "1件はインシデント対応窓口が受け付け、確認を待っています。" in report.verdict


def test_change_is_not_counted_against_days_before_the_trial(
    sessions: sessionmaker[Session],
) -> None:
    """A trial that began inside the week before: that week is not all there, so the report
    says there is nothing to compare with rather than "3 more than the week before (0)"."""
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        trial_of(session, company).starts_on = date(2026, 10, 28)
        for number in range(3):
            add_alert(session, tenant, f"a{number}", datetime(2026, 11, 3, number, tzinfo=UTC))
        report = assemble(session, company)
        company.language = "en"
        english = assemble(session, company)
    assert report.total == 3 and report.previous_total is None
    assert report.change == "前の期間は体験開始前のため、比較はありません。"
    assert english.change == "No comparison: the previous period was before the trial."


def test_change_is_counted_against_trial_days_before_a_late_first_poll(
    sessions: sessionmaker[Session],
) -> None:
    """A tenant connected late in its trial: its first poll fetched back to the trial's
    start, so the week before (in the trial) is complete and the change is counted."""
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        add_alert(session, tenant, "now", datetime(2026, 11, 3, tzinfo=UTC))
        tenant.first_poll_done_at = datetime(2026, 11, 4, 3, 0, tzinfo=UTC)
        report = assemble(session, company)
    assert report.change == "前週より1件増えました（前週は0件）。"


def test_a_period_of_other_length_is_titled_and_compared_as_what_it_is(
    sessions: sessionmaker[Session],
) -> None:
    start, end = date(2026, 10, 31), date(2026, 11, 8)  # nine days
    with sessions() as session:
        company, tenant = add_company(session, "acme", "株式会社アクメ")
        trial_of(session, company).starts_on = date(2026, 9, 1)
        add_alert(session, tenant, "before", datetime(2026, 10, 25, tzinfo=UTC))
        for number in range(3):
            add_alert(session, tenant, f"a{number}", datetime(2026, 11, 2, number, tzinfo=UTC))
        report = detection_report_for(
            session, company.id, start, end, now=NOW, settings=SETTINGS, kind="period"
        )
        company.language = "en"
        english = detection_report_for(
            session, company.id, start, end, now=NOW, settings=SETTINGS, kind="period"
        )
    assert report.title == "EDR体験 検知レポート"
    assert report.subject == "【EDR体験】検知レポート（2026/10/31〜2026/11/08）株式会社アクメ"
    assert report.change == "直前の同じ日数（9日間）より2件増えました（直前の9日間は1件）。"
    assert english.title == "EDR trial: detection report"
    assert english.subject.startswith("[EDR trial] Detection report (")
    assert english.change == "2 more than the 9 days before (1)."


@pytest.mark.parametrize(
    ("start", "end", "monthly", "kind"),
    [
        (date(2026, 11, 1), date(2026, 11, 7), False, "weekly"),
        (date(2026, 10, 1), date(2026, 10, 31), False, "monthly"),
        (date(2026, 2, 1), date(2026, 2, 28), False, "monthly"),
        (date(2026, 10, 2), date(2026, 10, 31), False, "period"),
        (date(2026, 10, 1), date(2026, 10, 30), False, "period"),
        (date(2026, 11, 1), date(2026, 11, 7), True, "monthly"),
        (date(2026, 11, 1), date(2026, 11, 1), False, "period"),
    ],
)
def test_the_kind_of_a_period_asked_for(start: date, end: date, monthly: bool, kind: str) -> None:
    assert period_kind(start, end, monthly=monthly) == kind
