"""Promises match the clock: a company is promised the desk its tickets get.

During its trial a company has the incident desk around the clock and its urgent tickets
run on the wall clock; once the trial has ended its tickets wait for business hours, so
no mail may still promise "24時間・休日も対応". Tickets, mails and the desk's notices are
made through the service's own triage, desk and report code on a real store; the clock is
the test's (clock.NOW, a Wednesday 10:00 in Tokyo).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.config import ChannelConfig, DeskConfig, MailConfig, Settings
from edrtrial.connectors.base import ActionKind, ActionStatus
from edrtrial.coverage import Clock, coverage_at
from edrtrial.db import transaction
from edrtrial.desk import escalation, operator, sla
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.triage import triage_pending
from edrtrial.devices import actions
from edrtrial.models import (
    Alert,
    Company,
    Device,
    OutboxMessage,
    ResponseAction,
    Tenant,
    Ticket,
    Trial,
)
from edrtrial.notify.report_mail import queue_detection_report
from edrtrial.notify.webhooks import teams_payload, webhook_payload
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks
from edrtrial.reports.vocabulary import ja_date, jst_minute
from edrtrial.timeutil import JST

from clock import NOW, day
from conftest import add_tenant
from fakes import FakeConnector
from sandbox_config import sample_world, sandbox_config, serving

PLAYBOOK = load_playbooks(default_playbook_paths())
DESK = DeskConfig(
    name="EDR体験 サポートデスク",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-0000-0001",
)
SETTINGS = Settings(mail=MailConfig(from_address="reports@example.jp"), desk=DESK)
POLICY = DeskPolicy(DESK)
TEAMS_POLICY = DeskPolicy(
    DESK.model_copy(
        update={"channels": [ChannelConfig(name="duty", kind="teams", url="env:TEAMS_URL")]}
    )
)
ROUND_THE_CLOCK = ("24時間", "休日も対応", "24 hours", "holidays included")
AROUND_THE_CLOCK = {
    "ja": "インシデント対応窓口（24時間・休日も対応）",
    "en": "Incident desk (24 hours, holidays included)",
}
BY_HOURS = {
    "ja": "インシデント対応窓口（平日 9:00〜17:00）",
    "en": "Incident desk (平日 9:00〜17:00)",
}
COLON = {"ja": "：", "en": ": "}
SUMMARY = {
    "when": "11/25 09:55",
    "what": "認証情報の窃取の試み",
    "cause": "不審な添付ファイル",
    "handling": "端末を隔離し、調査後に解除",
    "effect": "拡大なし",
}
# The sample programme's two stories (tests/sandbox_config.py): mid-trial, and ended 10 days ago.
IN_TRIAL = (day(-60), day(30))
ENDED = (day(-101), day(-10))


def company_with_trial(
    sessions: sessionmaker[Session],
    trial: tuple[date, date],
    *,
    language: str = "ja",
    decision: str = "undecided",
) -> int:
    """A company (contact language `language`) with its tenant and trial; the tenant id."""
    tenant_id = add_tenant(sessions, "acme", "株式会社アクメ")
    with transaction(sessions) as session:
        company = session.get_one(Company, session.get_one(Tenant, tenant_id).company_id)
        company.contact_name = "山田 太郎"
        company.language = language
        starts, ends = trial
        session.add(Trial(company_id=company.id, starts_on=starts, ends_on=ends, decision=decision))
    return tenant_id


def credential_theft(
    sessions: sessionmaker[Session],
    tenant_id: int,
    at: datetime,
    *,
    category: str = "CredentialAccess",
    device: str = "PC-KEIRI-01",
) -> None:
    """A high-severity credential theft on `device`: P1, the company told, isolation proposed
    (requested for a Ransomware `category`)."""
    with transaction(sessions) as session:
        session.add(
            Alert(
                tenant_id=tenant_id,
                source="defender",
                source_id="da-1",
                incident_source_id="inc-1",
                title="Credential theft",
                severity="high",
                status="new",
                category=category,
                device_source_ids=["machine-guid-0001"],
                device_names=[device],
                created_at=at,
                last_update_at=at,
            )
        )


def triage(
    sessions: sessionmaker[Session], tenant_id: int, at: datetime, policy: DeskPolicy = POLICY
) -> None:
    with transaction(sessions) as session:
        triage_pending(session, tenant_id, "acme", PLAYBOOK, policy, at)


def change_device(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: FakeConnector,
    kind: ActionKind,
    device_id: int,
    ticket_id: int,
    at: datetime,
) -> None:
    """An operator isolates (or releases) the device at `at`; the EDR reports success."""
    with transaction(sessions) as session:
        action_id = actions.plan(
            session,
            session.get_one(Device, device_id),
            kind,
            actor="cli:sato",
            at=at,
            ticket=session.get_one(Ticket, ticket_id),
        ).id
    connector.clock = lambda: at
    sent = actions.send(sessions, action_id, connector, "cli:sato", lambda: at)
    connector.statuses[str(sent.source_action_id)] = ActionStatus.SUCCEEDED
    assert actions.follow(sessions, tenant_id, connector, DESK, at) == [action_id]


def jst(at: datetime) -> str:
    """An instant as the desk notices print it (Tokyo time)."""
    return jst_minute(at)


def body_of(sessions: sessionmaker[Session], kind: str) -> str:
    with sessions() as session:
        message = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).one()
        return message.body_text


@pytest.mark.parametrize(
    ("at", "stage", "promise", "days_left"),
    [
        pytest.param(datetime(2026, 8, 31, 23, 59, tzinfo=JST), "before", "business", 0, id="eve"),
        pytest.param(
            datetime(2026, 9, 1, 0, 0, tzinfo=JST), "running", "incident-desk", 90, id="first"
        ),
        pytest.param(
            datetime(2026, 11, 30, 23, 59, tzinfo=JST), "running", "incident-desk", 0, id="last"
        ),
        pytest.param(datetime(2026, 12, 1, 0, 0, tzinfo=JST), "ended", "business", 0, id="after"),
    ],
)
def test_the_promise_follows_the_trials_tokyo_days(at, stage, promise, days_left):
    """The trial's days are Tokyo's: 23:59 on its last day is inside, midnight is not. A P1
    runs on the 24-hour clock exactly while the company is promised the 24-hour desk."""
    trial = Trial(starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30), decision="offboard")
    coverage = coverage_at(trial, at.astimezone(UTC))
    assert (coverage.stage, coverage.promise, coverage.days_left) == (stage, promise, days_left)
    assert sla.clock_for("P1", coverage.in_trial, POLICY.sla) is coverage.promise
    assert sla.clock_for("P3", coverage.in_trial, POLICY.sla) is Clock.BUSINESS
    assert coverage_at(None, at).promise is Clock.BUSINESS  # no trial, no 24-hour desk


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_company_whose_trial_ended_is_not_promised_the_round_the_clock_desk(sessions, language):
    tenant_id = company_with_trial(sessions, ENDED, language=language)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)

    text = body_of(sessions, "company-notice")
    for promise in ROUND_THE_CLOCK:
        assert promise not in text, promise
    assert BY_HOURS[language] in text
    if language == "ja":
        assert "受付時間外（夜間・休日）に届いた検知は、次の受付時間に確認します" in text
        assert "端末の隔離）は、無料体験期間中のみ行っています" in text
        assert "遠隔で切り離します" not in text
    else:
        assert "during its business hours (平日 9:00〜17:00, Japan time)" in text
        assert "only during the free trial" in text


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_company_in_its_trial_is_promised_the_round_the_clock_desk(sessions, language):
    tenant_id = company_with_trial(sessions, IN_TRIAL, language=language)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)

    text = body_of(sessions, "company-notice")
    assert f"{AROUND_THE_CLOCK[language]}{COLON[language]}03-0000-0001" in text
    assert BY_HOURS[language] not in text


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_mail_promises_the_desk_of_the_day_it_is_written(sessions, language):
    """One ticket across the trial's end: isolated in the trial, released, answered and
    resolved after it. Each mail promises the desk the company has when it is written."""
    # The trial ends on Friday; the desk finishes the case on the Monday after.
    tenant_id = company_with_trial(sessions, (day(-60), day(2)), language=language)
    after = NOW + timedelta(days=5)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)
    connector = FakeConnector(tenant_id="t-acme")
    with sessions() as session:
        ticket_id = session.scalars(select(Ticket.id)).one()
        device_id = session.scalars(select(Device.id)).one()
    change_device(sessions, tenant_id, connector, ActionKind.ISOLATE, device_id, ticket_id, NOW)
    change_device(sessions, tenant_id, connector, ActionKind.RELEASE, device_id, ticket_id, after)
    with transaction(sessions) as session:
        operator.message_company(session, ticket_id, "お電話します。", "cli:sato", after, POLICY)
        operator.acknowledge(session, ticket_id, "cli:sato", after)
        operator.resolve(session, ticket_id, SUMMARY, "cli:sato", after, POLICY)

    with sessions() as session:
        mails = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    company = [m for m in mails if m.recipient == "it@acme.example.jp"]
    kinds = [m.kind for m in company]
    assert kinds == [
        "company-notice",
        "isolation-notice",
        "isolation-notice",
        "company-message",
        "incident-report",
    ]
    in_trial, after_trial = company[:2], company[2:]
    for mail in in_trial:
        assert AROUND_THE_CLOCK[language] in mail.body_text, mail.subject
        assert BY_HOURS[language] not in mail.body_text, mail.subject
    for mail in after_trial:
        for part in filter(None, (mail.body_text, mail.body_html)):
            assert BY_HOURS[language] in part, mail.subject
            for promise in ROUND_THE_CLOCK:
                assert promise not in part, (mail.subject, promise)


def test_the_detection_report_promises_the_desk_of_the_day_it_is_written(sessions, tmp_path):
    reports = {}
    for key, trial in (("sakura", IN_TRIAL), ("midori", ENDED)):
        tenant_id = add_tenant(sessions, key)
        with transaction(sessions) as session:
            company_id = session.get_one(Tenant, tenant_id).company_id
            session.add(Trial(company_id=company_id, starts_on=trial[0], ends_on=trial[1]))
            session.flush()
            queued = queue_detection_report(
                session,
                company_id,
                day(-9),
                day(-3),
                now=NOW,
                settings=SETTINGS,
                archive_dir=tmp_path / "reports",
            )
            reports[key] = (queued.message.body_text, queued.html)

    for part in reports["sakura"]:
        assert "インシデント対応窓口（24時間・休日も対応）" in part
        assert "（残り30日）" in part
    for part in reports["midori"]:
        assert "運営事務局のインシデント対応窓口（平日 9:00〜17:00）が行っています" in part
        assert "無料体験期間が終了したため、受付時間外（夜間・休日）に届いた検知は" in part
        assert "（終了）" in part
        for promise in ROUND_THE_CLOCK:
            assert promise not in part, promise


def test_the_desk_notice_carries_the_deadline_the_trial_and_the_proposed_isolation(sessions):
    tenant_id = company_with_trial(sessions, IN_TRIAL)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)

    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        proposal = session.scalars(select(ResponseAction)).one()
    assert (ticket.priority, proposal.status) == ("P1", "proposed")
    text = body_of(sessions, "desk-notice")
    for expected in (
        f"確認期限：{jst(NOW + timedelta(minutes=30))}（JST）　時計：24時間（夜間・休日も数える）",
        f"無料体験：期間中（残り30日、{ja_date(day(30))} まで）　継続の判断：未定（undecided）",
        f"  #{proposal.id} ネットワークからの隔離　PC-KEIRI-01 (machine-guid-0001)："
        "提案・オペレーターの承認待ち（proposed）",
        f"edrtrial ticket isolate {ticket.id}",
    ):
        assert expected in text, expected


def test_an_isolation_the_company_agreed_to_is_shown_planned(sessions):
    tenant_id = company_with_trial(sessions, IN_TRIAL, decision="continue")
    with transaction(sessions) as session:
        session.scalars(select(Company)).one().auto_isolation = True
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5), category="Ransomware")
    triage(sessions, tenant_id, NOW)

    text = body_of(sessions, "desk-notice")
    assert (
        "ネットワークからの隔離　PC-KEIRI-01 (machine-guid-0001)：予定・送信待ち（planned）" in text
    )
    assert "継続の判断：継続（ベンダーと直接契約）（continue）" in text
    assert "edrtrial ticket isolate" not in text  # nothing waits for an operator's approval


# Friday 27 November 2026, 23:00 in Tokyo: the support desk is closed until Monday 9:00.
FRIDAY_NIGHT = NOW + timedelta(days=2, hours=13)


@pytest.mark.parametrize(
    ("trial", "due", "clock", "stage"),
    [
        pytest.param(
            IN_TRIAL,
            FRIDAY_NIGHT + timedelta(minutes=30),
            "24時間（夜間・休日も数える）",
            f"期間中（残り28日、{ja_date(day(30))} まで）",
            id="in-trial",
        ),
        pytest.param(
            ENDED,
            NOW + timedelta(days=5, minutes=-30),  # Monday 30 November, 9:30
            "営業時間のみ（夜間・休日は数えない）",
            f"{ja_date(day(-10))} に終了",
            id="ended",
        ),
    ],
)
def test_a_p1_on_friday_night_is_due_on_the_clock_the_desk_notice_names(
    sessions, trial, due, clock, stage
):
    tenant_id = company_with_trial(sessions, trial, decision="offboard")
    credential_theft(sessions, tenant_id, FRIDAY_NIGHT - timedelta(minutes=5))
    triage(sessions, tenant_id, FRIDAY_NIGHT)

    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
    assert ticket.priority == "P1" and ticket.ack_due_at == due
    text = body_of(sessions, "desk-notice")
    assert f"確認期限：{jst(due)}（JST）　時計：{clock}" in text
    assert f"無料体験：{stage}　継続の判断：継続しない（アンインストール）（offboard）" in text
    if trial == ENDED:  # the programme no longer isolates: nothing is proposed
        assert "端末の操作：なし" in text


def test_the_escalation_carries_the_next_deadline_the_trial_and_the_proposal(sessions):
    tenant_id = company_with_trial(sessions, IN_TRIAL)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)
    missed = NOW + timedelta(minutes=30)
    with transaction(sessions) as session:
        assert escalation.escalate_overdue(session, POLICY, missed + timedelta(minutes=1))

    text = body_of(sessions, "desk-escalation")
    for expected in (
        f"確認期限 {jst(missed)}（JST）までに確認されていません",
        f"次の確認期限：{jst(missed + timedelta(minutes=30))}（JST）　時計：24時間",
        "無料体験：期間中（残り30日",
        "PC-KEIRI-01 (machine-guid-0001)：提案・オペレーターの承認待ち（proposed）",
    ):
        assert expected in text, expected


def test_teams_cards_and_webhooks_carry_the_facts_and_device_names_stay_text(sessions):
    forged = "端末の操作：なし"
    tenant_id = company_with_trial(sessions, IN_TRIAL)
    device = f"<!channel> pc-01\n{forged}"
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5), device=device)
    triage(sessions, tenant_id, NOW, policy=TEAMS_POLICY)

    with sessions() as session:
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "desk-notice")
        ).one()
        assert message.channel == "teams"
        card = teams_payload(message)
        hook = webhook_payload(message)
    lines = [block["inlines"][0]["text"] for block in card["attachments"][0]["content"]["body"]]
    for expected in (
        f"確認期限：{jst(NOW + timedelta(minutes=30))}（JST）　時計：24時間（夜間・休日も数える）",
        f"無料体験：期間中（残り30日、{ja_date(day(30))} まで）　継続の判断：未定（undecided）",
    ):
        assert expected in lines, expected
        assert expected in hook["text"].splitlines(), expected
    assert not [line for line in lines if line.strip().startswith(forged)]
    assert not [line for line in hook["text"].splitlines() if line.strip().startswith(forged)]
    proposal = [line for line in lines if "提案・オペレーターの承認待ち" in line]
    assert proposal and proposal[0].strip().startswith("#"), lines  # the device's name is text
    assert "<!channel>" not in hook["text"] and "&lt;!channel&gt; pc-01␊" in hook["text"]


def test_against_the_sandbox_only_the_company_in_its_trial_is_promised_the_24_hour_desk(
    tmp_path, now, database_url
):
    """The sample programme polled once (tests/sandbox_config.py): 緑商事's trial ended ten
    days ago, さくら製作所 is in its trial. Their mails, as the outbox writes them out."""
    with serving(sample_world(11, actions_at_once=True), tmp_path / "sandbox") as server:
        config = sandbox_config(tmp_path, server, database_url)
        for args in (["db", "upgrade"], ["poll"]):
            done = CliRunner().invoke(main, ["--config", str(config), *args])
            assert done.exit_code == 0, done.output
    sent = [
        message_from_bytes(path.read_bytes(), policy=email_policy.default)
        for path in sorted((tmp_path / "mail").glob("*.eml"))
    ]

    def bodies(to: str, company: str = "") -> list[str]:
        return [
            str(part.get_content())  # type: ignore[attr-defined]
            for mail in sent
            if mail["To"] == to and company in str(mail["Subject"])
            if (part := mail.get_body(preferencelist=("plain",))) is not None
        ]

    midori, sakura = bodies("soumu@midori.example.jp"), bodies("it@sakura.example.jp")
    assert midori and sakura, "both companies had an incident their contact is told of"
    for text in midori:
        assert "インシデント対応窓口（平日 9:00〜17:00）：03-0000-0001" in text
        for promise in ROUND_THE_CLOCK:
            assert promise not in text, promise
    for text in sakura:
        assert "インシデント対応窓口（24時間・休日も対応）：03-0000-0001" in text
    midori_desk = bodies("desk@example.jp", "緑商事")
    assert midori_desk
    for text in midori_desk:
        assert "時計：営業時間のみ（夜間・休日は数えない）" in text
        assert f"無料体験：{ja_date(day(-10))} に終了" in text
