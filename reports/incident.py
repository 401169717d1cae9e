"""The incident report a company receives when the desk resolves its ticket.

The programme's incident record has five parts (発生日時, インシデント内容, インシデントの原因,
対応方法, 対応の効果); the operator writes them in `Ticket.summary`, and this report adds what
the service knows for certain: the devices, the detections, the device actions and their results,
and what the company should do now.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.coverage import Coverage
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket
from edrtrial.reports.advice import topics_for
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.letterhead import letterhead
from edrtrial.reports.pdf import html_to_pdf
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render
from edrtrial.reports.vocabulary import (
    ACTION_RESULT_EN,
    ACTION_RESULT_JA,
    SEVERITY_EN,
    SEVERITY_JA,
    action_label,
    action_result,
    device_label,
    device_names,
    jst_minute,
    plain_title,
    severity_key,
)
from edrtrial.tenancy import check_action, check_company, same_tenant

SUMMARY_FIELDS = ("when", "what", "cause", "handling", "effect")
MAX_REPORT_DETECTIONS = 20

# Fixed wording per language; the templates only lay it out, so ja and en cannot drift apart.
WORDS: dict[str, dict[str, str]] = {
    "ja": {
        "title": "インシデント対応のご報告",
        "intro": "EDR体験の運営事務局です。\n"
        "受付番号 #{ticket} の件について、インシデント対応窓口での対応が終わりましたので、"
        "ご報告します。",
        "resolved": "対応完了：{at}（日本時間）",
        "h_summary": "インシデントの概要",
        "when": "発生日時",
        "what": "インシデント内容",
        "cause": "インシデントの原因",
        "handling": "対応方法",
        "effect": "対応の効果",
        "h_devices": "対象の端末と検知",
        "devices": "対象の端末",
        "no_devices": "（端末の特定はありません）",
        "col_at": "日時（日本時間）",
        "col_device": "端末",
        "col_what": "内容",
        "col_severity": "重要度",
        "col_action": "操作",
        "col_result": "結果",
        "no_detections": "この件に結びついた検知はありません。",
        "more": "ほか {n} 件",
        "h_actions": "端末に行った操作",
        "no_actions": "端末の隔離などの操作は行っていません。",
        "h_todo": "貴社にお願いしたいこと",
        "h_contacts": "連絡先",
        "quote": "お問い合わせの際は、受付番号 #{ticket} をお伝えください。",
        "closing": "このメールは、本件の対応を終えたときにお送りしています。",
        "time_suffix": "（日本時間）",
        "colon": "：",
        "paren": "（{}）",
        "part": "【{}】",
        "list_sep": "、",
        "ticket_ref": "受付番号 #{}",
        "generated": "{at}（日本時間）",
        "file": "EDRインシデント報告_{company}_受付番号{ticket}.pdf",
    },
    "en": {
        "title": "Incident report",
        "intro": "This is the secretariat of the EDR trial programme.\n"
        "The incident desk has finished handling ticket #{ticket}. This is our report on it.",
        "resolved": "Handling completed: {at} (Japan time)",
        "h_summary": "Summary of the incident",
        "when": "When it happened",
        "what": "What happened",
        "cause": "Cause",
        "handling": "How it was handled",
        "effect": "Effect of the handling",
        "h_devices": "Affected computers and detections",
        "devices": "Affected computers",
        "no_devices": "(no computer identified)",
        "col_at": "When (Japan time)",
        "col_device": "Computer",
        "col_what": "What",
        "col_severity": "Severity",
        "col_action": "Action",
        "col_result": "Result",
        "no_detections": "No detection is linked to this case.",
        "more": "and {n} more",
        "h_actions": "Actions taken on computers",
        "no_actions": "No computer was isolated or otherwise acted on.",
        "h_todo": "What we ask you to do now",
        "h_contacts": "Contacts",
        "quote": "Please quote ticket #{ticket} when you contact us.",
        "closing": "This report was sent when the incident desk finished handling the case.",
        "time_suffix": " (Japan time)",
        "colon": ": ",
        "paren": " ({})",
        "part": "* {}",
        "list_sep": ", ",
        "ticket_ref": "ticket #{}",
        "generated": "{at} (Japan time)",
        "file": "EDR-incident-report_{company}_ticket{ticket}.pdf",
    },
}

# What the company should do about each device's final state (names joined in {d}).
_DEVICE_TODO = {
    "ja": {
        "isolated": "「{d}」は、現在もネットワークから隔離されています。隔離の解除は、"
        "インシデント対応窓口が遠隔で行い、解除したらお知らせします。貴社で操作していただく"
        "必要はありません。それまで、この端末ではインターネットや社内のネットワークは使えません。"
        "LANケーブルの差し替えなどでつなぎ直すことはしないでください。",
        "isolating": "「{d}」は、隔離の操作がまだ完了していません。完了したときと、解除したときに、"
        "インシデント対応窓口からお知らせします。",
        "releasing": "「{d}」は、隔離を解除しているところです。電源が入っていれば、まもなく"
        "ふだんどおり使えます。1時間ほどたってもつながらない場合は、下記までご連絡ください。",
        "released": "「{d}」の隔離は解除済みで、ふだんどおりお使いいただけます。",
        "isolation_failed": "「{d}」は、遠隔での隔離ができませんでした。LANケーブルを抜くなどして"
        "ネットワークから外している場合は、つなぎ直す前にインシデント対応窓口にご相談ください。",
    },
    "en": {
        "isolated": "{d} is still isolated from the network. The incident desk will release it "
        "remotely and tell you when it has; you do not need to do anything. Until then it cannot "
        "reach the internet or your office network. Please do not try to reconnect it "
        "(for example by changing the cable).",
        "isolating": "The isolation of {d} has not completed yet. The incident desk will tell you "
        "when it has, and when the computer is released.",
        "releasing": "{d} is being released from isolation. If it is switched on, it will work as "
        "usual shortly. If it still cannot connect after about an hour, please call us.",
        "released": "{d} has been released from isolation and can be used as usual.",
        "isolation_failed": "{d} could not be isolated remotely. If you disconnected it yourself "
        "(for example by unplugging the cable), please ask the incident desk before "
        "reconnecting it.",
    },
}
_TOPIC_TODO = {
    "ja": {
        "mail": "心当たりのないメールの添付ファイルやURLは開かないよう、社内の皆さまに"
        "あらためてお伝えください。",
        "passwords": "対象の端末で使っていたパスワード（メールやクラウドサービスなど）を変更し、"
        "多要素認証を有効にしてください。",
        "backup": "大切なデータのバックアップを取り、1つはふだんネットワークにつながない場所"
        "（外付けディスクなど）に保管してください。",
    },
    "en": {
        "mail": "Remind everyone in the company not to open attachments or links in "
        "unexpected e-mails.",
        "passwords": "Change the passwords used on the affected computers (e-mail, cloud "
        "services and so on) and turn on multi-factor authentication.",
        "backup": "Back up important data and keep one copy somewhere that is not normally "
        "connected to the network (for example an external disk).",
    },
}
_ALWAYS_TODO = {
    "ja": "同じような表示や動きに気づいたときは、電源を切らずに、受付番号 #{ticket} を"
    "お伝えのうえ、下記までご連絡ください。",
    "en": "If you notice anything similar, do not switch the computer off; call us and quote "
    "ticket #{ticket}.",
}
_STATE_ORDER = ("isolated", "isolating", "releasing", "isolation_failed", "released")


@dataclass(frozen=True, slots=True)
class SummarySection:
    """One part of the programme's incident record: its heading and the operator's text."""

    key: str
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class ReportDetection:
    """A detection of the ticket, in the company's words."""

    at: str
    device: str
    what: str
    severity: str
    severity_key: str


@dataclass(frozen=True, slots=True)
class ReportAction:
    """A device action the desk took and how it ended."""

    at: str
    device: str
    what: str
    result: str
    failed: bool


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """Everything the incident report mail shows, in one language."""

    language: str
    company_name: str
    salutation: str
    ticket_id: int
    intro: str
    resolved_at: str
    sections: tuple[SummarySection, ...]
    devices: tuple[str, ...]
    detections: tuple[ReportDetection, ...]
    more_detections: int
    actions: tuple[ReportAction, ...]
    todo: tuple[str, ...]
    desk: DeskContacts


def _clean(value: Any) -> str:
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def summary_sections(summary: Mapping[str, Any], language: str) -> tuple[SummarySection, ...]:
    """The five parts in the programme's order; a missing or blank one is an error, not a gap."""
    words = WORDS[language]
    missing = [key for key in SUMMARY_FIELDS if not _clean(summary.get(key) or "")]
    if missing:
        raise ValueError(f"the incident summary lacks: {', '.join(missing)}")
    return tuple(SummarySection(k, words[k], _clean(summary[k])) for k in SUMMARY_FIELDS)


def _stamp(action: ResponseAction) -> datetime | None:
    # A finished action is dated by its result, a running one by its request.
    if action_result(action.status) == "running":
        return action.created_at or action.updated_at
    return action.updated_at or action.created_at


def _order_key(pair: tuple[ResponseAction, Device]) -> tuple[bool, str, int]:
    stamp = _stamp(pair[0])
    return (stamp is None, stamp.isoformat() if stamp else "", pair[0].id or 0)


def _device_state(state: str, kind: str, result: str) -> str:
    """A device's isolation state after one more action (states as in _STATE_ORDER)."""
    if kind == "isolate":
        if result == "done":
            return "isolated"
        if result == "running":
            return "isolating"
        return state if state == "isolated" else "isolation_failed"
    if kind == "release":
        if result == "done":
            return "released"
        if result == "running":
            return "releasing"
        return "isolated" if state in ("isolated", "releasing", "isolating") else state
    return state


def _todo(
    language: str,
    ticket_id: int,
    alerts: Sequence[Alert],
    ordered: Sequence[tuple[ResponseAction, Device]],
) -> tuple[str, ...]:
    states: dict[str, str] = {}
    for action, device in ordered:
        name = device_label(device.name, language)
        state = _device_state(
            states.get(name, ""), action.kind.casefold(), action_result(action.status)
        )
        if state:
            states[name] = state
    joiner = "、" if language == "ja" else ", "
    lines = []
    for state in _STATE_ORDER:
        names = [name for name, s in states.items() if s == state]
        if names:
            lines.append(_DEVICE_TODO[language][state].format(d=joiner.join(names)))
    lines.extend(_TOPIC_TODO[language][topic] for topic in topics_for(alerts))
    lines.append(_ALWAYS_TODO[language].format(ticket=ticket_id))
    return tuple(lines)


def _detections(
    alerts: Sequence[Alert], ticket: Ticket, language: str
) -> tuple[ReportDetection, ...]:
    severities = SEVERITY_EN if language == "en" else SEVERITY_JA
    return tuple(
        ReportDetection(
            at=jst_minute(a.created_at or ticket.created_at),
            device=device_names(a, language),
            what=plain_title(a, language),
            severity=severities[severity_key(a.severity)],
            severity_key=severity_key(a.severity),
        )
        for a in alerts
    )


def _actions(actions: Sequence[tuple[ResponseAction, Device]], language: str) -> list[ReportAction]:
    results = ACTION_RESULT_EN if language == "en" else ACTION_RESULT_JA
    shown = []
    for action, device in actions:
        stamp = _stamp(action)
        result = action_result(action.status)
        shown.append(
            ReportAction(
                at=jst_minute(stamp) if stamp else "",
                device=device_label(device.name, language),
                what=action_label(action.kind, language),
                result=results[result],
                failed=result == "failed",
            )
        )
    return shown


def _salutation(company: Company, language: str) -> str:
    if language == "en":
        return f"Dear {company.contact_name}," if company.contact_name else "Dear contact person,"
    return f"{company.contact_name} 様" if company.contact_name else "ご担当者 様"


def assemble_incident_report(
    company: Company,
    ticket: Ticket,
    alerts: Sequence[Alert],
    actions: Sequence[tuple[ResponseAction, Device]],
    desk: DeskConfig,
    coverage: Coverage,
) -> IncidentReport:
    """The report's data, refusing anything of another tenant or ticket.

    `coverage` is the company's trial as the report is written: its contacts promise the
    desk the company has from then on.
    """
    check_company(company, ticket)
    ordered_alerts = same_tenant(ticket, alerts)
    for action, device in actions:
        check_action(ticket, action, device)
    language = "en" if company.language == "en" else "ja"
    words = WORDS[language]
    sections = summary_sections(ticket.summary or {}, language)
    # A proposal nobody confirmed never touched the device: the company hears only of real actions.
    taken = [pair for pair in actions if action_result(pair[0].status) != "not_taken"]
    ordered_actions = sorted(taken, key=_order_key)

    detections = _detections(ordered_alerts[:MAX_REPORT_DETECTIONS], ticket, language)
    report_actions = _actions(ordered_actions, language)
    names = [n for a in ordered_alerts for n in a.device_names or [] if n]
    names += [device.name for _, device in ordered_actions if device.name]
    return IncidentReport(
        language=language,
        company_name=company.name,
        salutation=_salutation(company, language),
        ticket_id=ticket.id,
        intro=words["intro"].format(ticket=ticket.id),
        resolved_at=(
            words["resolved"].format(at=jst_minute(ticket.resolved_at))
            if ticket.resolved_at
            else ""
        ),
        sections=sections,
        devices=tuple(dict.fromkeys(names)),
        detections=detections,
        more_detections=max(len(ordered_alerts) - MAX_REPORT_DETECTIONS, 0),
        actions=tuple(report_actions),
        todo=_todo(language, ticket.id, ordered_alerts, ordered_actions),
        desk=desk_contacts(desk, coverage, language),
    )


def incident_report_mail(
    company: Company,
    ticket: Ticket,
    alerts: Sequence[Alert],
    actions: Sequence[tuple[ResponseAction, Device]],
    desk: DeskConfig,
    coverage: Coverage,
) -> RenderedMail:
    """The incident report for the company contact: plain text and the HTML alternative."""
    report = assemble_incident_report(company, ticket, alerts, actions, desk, coverage)
    words = WORDS[report.language]
    if report.language == "en":
        subject = f"{SUBJECT_PREFIX_EN} Incident report (ticket #{ticket.id})"
    else:
        subject = f"{SUBJECT_PREFIX}インシデント対応のご報告（受付番号 #{ticket.id}）"
    return RenderedMail(
        subject=subject,
        text=render("incident_report.txt.j2", r=report, w=words),
        html=render("incident_report.html.j2", r=report, w=words),
    )


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def incident_report_filename(report: IncidentReport, company_key: str) -> str:
    """The PDF's name as the company sees it in the mail, in its language."""
    safe = _UNSAFE_NAME.sub("_", company_key)
    return WORDS[report.language]["file"].format(company=safe, ticket=report.ticket_id)


def incident_report_print_html(
    report: IncidentReport, programme: ProgrammeConfig, *, generated_at: datetime
) -> str:
    """The incident report as the HTML page the PDF is printed from: the shared print layout
    (`report_layout.html.j2`: letterhead, page numbers, the report font) around it."""
    words = WORDS[report.language]
    title = words["title"] + words["paren"].format(words["ticket_ref"].format(report.ticket_id))
    return render(
        "incident_report.pdf.html.j2",
        r=report,
        w=words,
        language=report.language,
        title=title,
        letterhead=letterhead(programme),
        generated_at=words["generated"].format(at=jst_minute(generated_at)),
    )


def incident_report_pdf(
    report: IncidentReport, programme: ProgrammeConfig, *, generated_at: datetime
) -> bytes:
    """The incident report printed: the mail's content under the programme's letterhead,
    with page numbers, in the report font (its text stays text)."""
    return html_to_pdf(incident_report_print_html(report, programme, generated_at=generated_at))
