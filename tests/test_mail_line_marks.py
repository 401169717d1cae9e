"""Every mail the service sends reads as written: no ␊, ␍ or ␉ where our own wording breaks
a line.

A template prints each value on one line (a line break inside it shown as `␊`, so an alert
title cannot add a line of its own); a value that is several lines by design (an intro, a
summary, an operator's message) must go through the `body` filter. This renders every
template, through the functions that build the mails, in Japanese and English, with
ordinary data, and looks for the marks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import test_desk_notices as desk
import test_incident_report as incident
from jinja2 import Template
from test_desk_notices import (
    DEADLINE,
    DESK,
    FACTS,
    IN_TRIAL,
    TRIAL,
    action,
    alert,
    company,
    device,
    ticket,
)
from test_report_render import sample_report

from edrtrial.config import AppRegistrationConfig, ProgrammeConfig
from edrtrial.coverage import Coverage, coverage_at
from edrtrial.models import Company
from edrtrial.notify import trial_mail
from edrtrial.notify.consent import consent_request_mail
from edrtrial.notify.escalation_group import EscalatedTicket, desk_escalation_group_notice
from edrtrial.notify.first_poll import (
    Backlog,
    BacklogTicket,
    company_first_poll_summary,
    desk_first_poll_notice,
)
from edrtrial.notify.journey_mail import EVENTS as JOURNEY_EVENTS
from edrtrial.notify.journey_mail import journey_mail
from edrtrial.notify.notices import (
    DeskFacts,
    ServiceAlarm,
    company_alert_notice,
    company_message,
    desk_escalation_notice,
    desk_service_alarm,
    desk_ticket_notice,
    desk_ticket_update_notice,
    isolation_notice,
)
from edrtrial.programme.seats import SeatRow
from edrtrial.reports.cohort_results import CompanyFigures, cohort_results, results_html
from edrtrial.reports.incident import (
    assemble_incident_report,
    incident_report_mail,
    incident_report_print_html,
)
from edrtrial.reports.render import (
    RenderedMail,
    detection_report_mail,
    environment,
    render_detection_report_print,
)
from edrtrial.reports.seat_report import build_seat_report, seat_report_mail

MARKS = ("\u240a", "\u240d", "\u2409")  # ␊ ␍ ␉


def trial_mails(firm: Company) -> Iterator[RenderedMail]:
    """The end-of-trial mails: the reminder, the offboarding (ended, withdrawn), the end."""
    for app, manual in ((None, 0), (AppRegistrationConfig(client_id="app-1"), 1)):
        facts = trial_mail.letter(
            firm,
            TRIAL,
            offboard_from=TRIAL.ends_on + timedelta(days=1),
            today=TRIAL.ends_on - timedelta(days=7),
            at=DEADLINE,
            programme=ProgrammeConfig(app=app),
            desk=DESK,
            devices=3 * manual,
            manual=manual,
        )
        yield trial_mail.reminder_mail(firm, facts, 7)
        yield trial_mail.offboarding_mail(firm, facts, withdrawn=False)
        yield trial_mail.offboarding_mail(firm, facts, withdrawn=True)
        yield trial_mail.offboarded_mail(firm, facts)


def mails(language: str, coverage: Coverage = IN_TRIAL) -> Iterator[RenderedMail]:
    """Each mail the service sends, for a company of that language (desk mails are Japanese)."""
    firm = company(language)
    facts = DeskFacts(coverage, FACTS.clock, ((action("isolate", "proposed"), device()),))
    yield company_alert_notice(firm, ticket(), [alert(1), alert(2, "Medium")], DESK, coverage)
    yield company_message(
        firm, ticket(), "本日15時ごろ、お電話します。\n\nよろしくお願いします。", DESK, coverage
    )
    for kind, status in desk.ISOLATION_CASES:
        yield isolation_notice(firm, ticket(), device(), action(kind, status), DESK, coverage)
    summary = incident.SUMMARY_EN if language == "en" else incident.SUMMARY_JA
    yield incident_report_mail(
        incident.company(language),
        incident.ticket(summary),
        incident.alerts(),
        incident.isolated(),
        incident.DESK,
        coverage,
    )
    printed = assemble_incident_report(
        incident.company(language),
        incident.ticket(summary),
        incident.alerts(),
        incident.isolated(),
        incident.DESK,
        coverage,
    )
    html = incident_report_print_html(printed, ProgrammeConfig(), generated_at=DEADLINE)
    yield RenderedMail(subject="the incident report's PDF", text="", html=html)
    report = sample_report(language)
    yield detection_report_mail(report)
    # Its PDF's HTML (the print layout), which the mail carries as an attachment.
    yield RenderedMail(report.subject, "", render_detection_report_print(report))
    yield from trial_mails(firm)
    yield desk_ticket_notice(firm, ticket(), [alert(1), alert(2, "Medium")], facts)
    yield desk_escalation_notice(firm, ticket(), [alert(1)], 2, DEADLINE, "oncall-teams", facts)
    escalated = EscalatedTicket(ticket(), DEADLINE, (alert(1), alert(2, "Medium")), facts)
    yield desk_escalation_group_notice(firm, [escalated], 2, "oncall-teams")
    yield desk_ticket_update_notice(
        firm, ticket(), "reopened", "新しいアラート：Alert number 7", facts
    )
    yield desk_ticket_update_notice(
        firm, ticket(), "priority_raised", "P3 → P1\n理由：ランサムウェア", facts
    )
    tenant = {"company_key": firm.key, "company_name": firm.name, "external_id": "t-1"}
    yield desk_service_alarm(ServiceAlarm("parked", DEADLINE, "secret expired", **tenant))
    yield desk_service_alarm(ServiceAlarm("failing", DEADLINE, "503", failures=4, **tenant))
    yield desk_service_alarm(ServiceAlarm("job", DEADLINE, "OSError: refused", job="outbox"))
    yield desk_service_alarm(
        ServiceAlarm("parked", DEADLINE, "secret expired", recovered_at=DEADLINE, **tenant)
    )
    yield desk_service_alarm(ServiceAlarm("seats", DEADLINE, "16 devices onboarded", **tenant))
    link = "https://login.microsoftonline.com/organizations/v2.0/adminconsent?client_id=x"
    for again in (False, True):
        yield consent_request_mail(firm, link, ProgrammeConfig(), DESK, again=again)
    backlog = Backlog(  # a first poll's summaries, with the promise `coverage` makes
        alerts=40,
        history=25,
        suppressed=3,
        tickets=(
            BacklogTicket(
                ticket(),
                (alert(1), alert(2, "Medium")),
                ("PC-KEIRI-01（proposed）",),
                FACTS.clock,
                proposed=1,
            ),
        ),
        for_company=frozenset({ticket().id}),
        trial=None,
        since=DEADLINE,
        coverage=coverage,
    )
    summary = company_first_poll_summary(firm, backlog, DESK)
    assert summary is not None
    yield summary
    yield desk_first_poll_notice(firm, backlog)
    yield seat_mail()
    refused = {"code": "seat_cap", "ja": "上限を超えています", "en": "above the cap"}
    for event in JOURNEY_EVENTS:
        yield journey_mail(firm, event, ProgrammeConfig(), DESK, position=2, reasons=[refused])


def seat_mail() -> RenderedMail:
    """The secretariat's weekly seat mail: two cohorts, a company over its cap, one near it."""
    start, end = TRIAL.starts_on, TRIAL.ends_on
    rows = [
        SeatRow(
            "acme", "株式会社アクメ", 10, 11, 9, 2, 10, start, end, "undecided", 0, "c1", "第1期"
        ),
        SeatRow("beta", "ベータ商事", 10, 9, 9, 0, 10, start, end, "continue", 0, "c1", "第1期"),
        SeatRow("gamma", "ガンマ", 5, 1, 1, 1, 300, start, end, "offboard", 3, "c2", "第2期"),
    ]
    week = (end - timedelta(days=6), end)
    report = build_seat_report(rows, end + timedelta(days=1))
    return seat_report_mail(report, programme="EDR体験", secretariat="運営事務局", period=week)


@pytest.fixture
def rendered(monkeypatch) -> set[str]:
    """The names of the templates rendered while the test runs."""
    env = environment()
    names: set[str] = set()
    get_template = env.get_template

    def recording(name: str, *args: Any, **kwargs: Any) -> Template:
        names.add(name)
        return get_template(name, *args, **kwargs)

    monkeypatch.setattr(env, "get_template", recording)
    return names


def test_no_mail_shows_a_line_break_mark(rendered) -> None:
    ended = coverage_at(TRIAL, datetime(2026, 12, 10, 1, 0, tzinfo=UTC))  # business hours only
    for language, coverage in itertools.product(("ja", "en"), (IN_TRIAL, ended)):
        for mail in mails(language, coverage):
            for part in (mail.subject, mail.text, mail.html or ""):
                marked = [line for line in part.splitlines() if any(m in line for m in MARKS)]
                assert not marked, f"{language}: {mail.subject}: {marked}"

    # The cohort's results report is a printed document, not a mail: it reads as written too.
    figures = CompanyFigures("retail", {"Malware": {"High": 1}}, 1, [5.0], [9.0], 2, 2, "", {})
    results = cohort_results([figures] * 3, programme="P", secretariat="S", cohort_name="第1期")
    html = results_html(results)
    assert not [line for line in html.splitlines() if any(m in line for m in MARKS)]

    templates = {name for name in environment().list_templates() if name.endswith(".j2")}
    assert rendered == templates  # every template was rendered
