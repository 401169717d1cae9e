"""The notices edrtrial writes: to the company contact and to the desk, about tickets and devices.

This is where a notice's words are chosen (in the company's language) and checked against
its tenant; `notify.recipients` addresses it and the outbox delivers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edrtrial.config import DeskConfig
from edrtrial.coverage import Clock, Coverage, TrialStage
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render
from edrtrial.reports.vocabulary import (
    SEVERITY_EN,
    SEVERITY_JA,
    action_label,
    action_result,
    device_label,
    device_names,
    ja_date,
    jst_minute,
    plain_title,
    severity_key,
)
from edrtrial.states import ActionState, TicketState
from edrtrial.tenancy import check_action, check_company, same_tenant

MAX_NOTICE_ALERTS = 10
MAX_ESCALATION_ALERTS = 5  # an escalation is read on a phone or a Teams card: the rest is a count


@dataclass(frozen=True, slots=True)
class _NoticeAlert:
    at: str
    device: str
    what: str
    severity: str


@dataclass(frozen=True, slots=True)
class _CompanyNotice:
    company_name: str
    contact_name: str
    ticket_id: int
    alerts: tuple[_NoticeAlert, ...]
    more: int
    desk: DeskContacts


def _language(company: Company) -> str:
    return "en" if company.language == "en" else "ja"


def _when(alert: Alert, ticket: Ticket) -> str:
    return jst_minute(alert.created_at or ticket.created_at)


def company_alert_notice(
    company: Company,
    ticket: Ticket,
    alerts: Sequence[Alert],
    desk: DeskConfig,
    coverage: Coverage,
) -> RenderedMail:
    """The prompt, calm notice to the company contact, in the company's language (ja or en).

    `coverage` is the company's trial when the notice is written: it decides whether the
    incident desk is promised around the clock or in business hours.
    """
    language = _language(company)
    ordered = same_tenant(ticket, alerts)
    labels = SEVERITY_EN if language == "en" else SEVERITY_JA
    shown = tuple(
        _NoticeAlert(
            at=_when(a, ticket),
            device=device_names(a, language),
            what=plain_title(a, language),
            severity=labels[severity_key(a.severity)],
        )
        for a in ordered[:MAX_NOTICE_ALERTS]
    )
    notice = _CompanyNotice(
        company_name=company.name,
        contact_name=company.contact_name,
        ticket_id=ticket.id,
        alerts=shown,
        more=max(len(ordered) - MAX_NOTICE_ALERTS, 0),
        desk=desk_contacts(desk, coverage, language),
    )
    if language == "en":
        subject = (
            f"[EDR trial - important] Suspicious activity detected on one of your "
            f"computers (ticket #{ticket.id})"
        )
    else:
        subject = (
            f"【EDR体験・重要】貴社のパソコンで不審な動きを検知しました（受付番号 #{ticket.id}）"
        )
    return RenderedMail(subject, render(f"company_alert_notice.{language}.txt.j2", n=notice))


def _desk_alert(alert: Alert, ticket: Ticket) -> dict[str, Any]:
    devices = ", ".join(
        f"{name} ({source_id})" if name else source_id
        for name, source_id in _pairs(alert.device_names or [], alert.device_source_ids or [])
    )
    url = alert.raw.get("alertWebUrl") if isinstance(alert.raw, dict) else None
    return {
        "severity": SEVERITY_JA[severity_key(alert.severity)],
        "category": alert.category or "",
        "title": " ".join((alert.title or "").split()),
        "at": _when(alert, ticket),
        "devices": devices or "なし",
        "mitre": ", ".join(alert.mitre_techniques or []),
        "detection_source": alert.detection_source or "",
        "service_source": alert.service_source or "",
        "status": alert.status or "",
        "suppressed": alert.suppressed_reason or "",
        "source_ref": f"{alert.source}:{alert.source_id}",
        "incident_id": alert.incident_source_id or "",
        "rules": ", ".join(alert.matched_rules or []),
        "url": url if isinstance(url, str) else "",
    }


def _pairs(names: Sequence[str], ids: Sequence[str]) -> list[tuple[str, str]]:
    count = max(len(names), len(ids))
    return [
        (names[i] if i < len(names) else "", ids[i] if i < len(ids) else "") for i in range(count)
    ]


@dataclass(frozen=True, slots=True)
class DeskFacts:
    """What the desk reads beside a ticket, as it stands when the notice is written.

    The desk gathers them (`desk.announce.desk_facts`): the company's trial, the clock the
    ticket's acknowledgement deadline runs on, and the ticket's device actions, so whoever
    picks the notice up knows how long they have, what the company was promised and which
    isolation waits for them.
    """

    coverage: Coverage
    clock: Clock
    actions: tuple[tuple[ResponseAction, Device], ...] = ()


CLOCK_JA = {
    Clock.INCIDENT_DESK: "24時間（夜間・休日も数える）",
    Clock.BUSINESS: "営業時間のみ（夜間・休日は数えない）",
}
_DECISION_JA = {
    "undecided": "未定",
    "continue": "継続（ベンダーと直接契約）",
    "offboard": "継続しない（アンインストール）",
}
# A device action's state as the desk reads it; the stored value follows in brackets.
_ACTION_STATE_JA: dict[str, str] = {
    ActionState.PROPOSED: "提案・オペレーターの承認待ち",
    ActionState.PLANNED: "予定・送信待ち",
    ActionState.SENDING: "送信中",
    ActionState.UNCONFIRMED: "送信済み・EDRの応答待ち",
    ActionState.PENDING: "EDRで実行待ち",
    ActionState.IN_PROGRESS: "EDRで実行中",
    ActionState.SUCCEEDED: "完了",
    ActionState.FAILED: "失敗",
    ActionState.TIMEOUT: "時間切れ",
    ActionState.CANCELLED: "中止",
}


def trial_ja(coverage: Coverage) -> str:
    """The company's trial as the desk reads it: its stage, days left and decision."""
    starts, ends = coverage.starts_on, coverage.ends_on
    if starts is None or ends is None:
        return "登録なし"
    if coverage.stage is TrialStage.BEFORE:
        stage = f"開始前（{ja_date(starts)} から）"
    elif coverage.ended:
        stage = f"{ja_date(ends)} に終了"
    else:
        stage = f"期間中（残り{coverage.days_left}日、{ja_date(ends)} まで）"
    decision = _DECISION_JA.get(coverage.decision, coverage.decision)
    return f"{stage}　継続の判断：{decision}（{coverage.decision}）"


def _device_ref(device: Device) -> str:
    return f"{device.name} ({device.source_id})" if device.name else device.source_id


def ticket_facts(ticket: Ticket, facts: DeskFacts) -> dict[str, Any]:
    """The deadline, its clock, the trial and the device actions, for every desk template
    (`desk_ticket_facts.txt.j2`, and each ticket of a grouped escalation)."""
    actions = []
    for action, device in facts.actions:
        check_action(ticket, action, device)
        if action.status == ActionState.SUPERSEDED:
            continue  # made moot by a planned isolation of the same device, listed itself
        actions.append(
            {
                "id": action.id,
                "what": action_label(action.kind),
                "device": _device_ref(device),
                "state": _ACTION_STATE_JA.get(action.status, action.status),
                "status": action.status,
                "proposed": action.status == ActionState.PROPOSED,
            }
        )
    if ticket.state != TicketState.NEW:
        due = "確認済み"
    else:
        due = f"{jst_minute(ticket.ack_due_at)}（JST）" if ticket.ack_due_at else "なし"
    return {
        "ack_due_at": jst_minute(ticket.ack_due_at) if ticket.ack_due_at else "",
        "due_label": "確認期限",
        "due": due,
        "clock": CLOCK_JA[facts.clock],
        "trial": trial_ja(facts.coverage),
        "actions": actions,
    }


def desk_ticket_notice(
    company: Company, ticket: Ticket, alerts: Sequence[Alert], facts: DeskFacts
) -> RenderedMail:
    """The operational notice to the support desk: who, how urgent, and every alert's evidence.

    Besides the evidence it says when the ticket must be acknowledged and on which clock,
    where the company stands in its trial, and which isolation is proposed or planned.
    """
    ordered = same_tenant(ticket, alerts)
    incident_ids = sorted({a.incident_source_id for a in ordered if a.incident_source_id})
    incident_urls = sorted(
        {
            url
            for a in ordered
            if isinstance(a.raw, dict)
            and isinstance(url := a.raw.get("incidentWebUrl"), str)
            and url
        }
    )
    contact = f"{company.contact_name} <{company.contact_email}>".strip()
    context = {
        "company_name": company.name,
        "company_key": company.key,
        "contact": contact,
        "language": company.language,
        "ticket_id": ticket.id,
        "priority": ticket.priority,
        "state": ticket.state,
        "created_at": jst_minute(ticket.created_at),
        "title": " ".join(ticket.title.split()),
        "correlation_key": ticket.correlation_key,
        "incident_ids": ", ".join(incident_ids),
        "incident_urls": incident_urls,
        "alerts": [_desk_alert(a, ticket) for a in ordered],
    } | ticket_facts(ticket, facts)
    subject = f"[{ticket.priority}] 新規チケット #{ticket.id} {company.name}：{context['title']}"
    return RenderedMail(subject, render("desk_ticket_notice.txt.j2", t=context))


@dataclass(frozen=True, slots=True)
class _IsolationNotice:
    company_name: str
    contact_name: str
    ticket_id: int
    device: str
    kind: str  # isolate | release
    result: str  # done | running | failed
    at: str
    desk: DeskContacts


_ISOLATION_SUBJECTS = {
    "ja": {
        ("isolate", "done"): "【EDR体験・重要】パソコン「{d}」をネットワークから隔離しました",
        ("isolate", "running"): "【EDR体験・重要】パソコン「{d}」をネットワークから隔離しています",
        ("isolate", "failed"): "【EDR体験・重要】パソコン「{d}」を遠隔で隔離できませんでした",
        ("release", "done"): "【EDR体験】パソコン「{d}」の隔離を解除しました",
        ("release", "running"): "【EDR体験】パソコン「{d}」の隔離を解除しています",
        ("release", "failed"): "【EDR体験・重要】パソコン「{d}」の隔離を解除できませんでした",
    },
    "en": {
        ("isolate", "done"): "[EDR trial - important] Computer {d} was isolated from the network",
        ("isolate", "running"): "[EDR trial - important] Computer {d} is being isolated",
        ("isolate", "failed"): "[EDR trial - important] Computer {d} could not be isolated",
        ("release", "done"): "[EDR trial] Computer {d} was released from isolation",
        ("release", "running"): "[EDR trial] Computer {d} is being released from isolation",
        ("release", "failed"): "[EDR trial - important] Computer {d} could not be released",
    },
}


def isolation_notice(
    company: Company,
    ticket: Ticket,
    device: Device,
    action: ResponseAction,
    desk: DeskConfig,
    coverage: Coverage,
) -> RenderedMail:
    """Tell the contact a PC was cut off (or released, or could not be): what it means, what next.

    One mail per action state: the desk sends it when the isolation is requested and again
    when Defender reports the result, so the wording follows `action.status`.
    """
    kind = action.kind.casefold()
    if kind not in ("isolate", "release"):
        raise ValueError(f"action {action.id} is a {action.kind!r}, not an isolation or release")
    check_company(company, ticket)
    check_action(ticket, action, device)
    language = _language(company)
    result = action_result(action.status)
    if result == "not_taken":
        raise ValueError(f"action {action.id} is only {action.status!r}: nothing to tell yet")
    stamp = action.updated_at if result != "running" else action.created_at
    notice = _IsolationNotice(
        company_name=company.name,
        contact_name=company.contact_name,
        ticket_id=ticket.id,
        device=device_label(device.name, language),
        kind=kind,
        result=result,
        at=jst_minute(stamp) if stamp else "",
        desk=desk_contacts(desk, coverage, language),
    )
    subject = _ISOLATION_SUBJECTS[language][(kind, result)].format(d=notice.device)
    subject += f" (ticket #{ticket.id})" if language == "en" else f"（受付番号 #{ticket.id}）"
    return RenderedMail(subject, render(f"isolation_notice.{language}.txt.j2", n=notice))


def company_message(
    company: Company, ticket: Ticket, text: str, desk: DeskConfig, coverage: Coverage
) -> RenderedMail:
    """An operator's own words to the contact, framed so it reads as the programme's mail."""
    body = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if not body:
        raise ValueError(f"the message to {company.key} about ticket {ticket.id} is empty")
    check_company(company, ticket)
    language = _language(company)
    context = {
        "company_name": company.name,
        "contact_name": company.contact_name,
        "ticket_id": ticket.id,
        "body": body,
        "desk": desk_contacts(desk, coverage, language),
    }
    if language == "en":
        subject = f"{SUBJECT_PREFIX_EN} A message about ticket #{ticket.id}"
    else:
        subject = f"{SUBJECT_PREFIX}受付番号 #{ticket.id} についてのご連絡"
    return RenderedMail(subject, render(f"company_message.{language}.txt.j2", m=context))


def _ticket_header(company: Company, ticket: Ticket) -> dict[str, Any]:
    return {
        "company_name": company.name,
        "company_key": company.key,
        "contact": f"{company.contact_name} <{company.contact_email}>".strip(),
        "ticket_id": ticket.id,
        "priority": ticket.priority,
        "state": ticket.state,
        "assignee": ticket.assignee or "",
        "title": " ".join(ticket.title.split()),
        "created_at": jst_minute(ticket.created_at) if ticket.created_at else "",
        "acknowledged_at": jst_minute(ticket.acknowledged_at) if ticket.acknowledged_at else "",
        "resolved_at": jst_minute(ticket.resolved_at) if ticket.resolved_at else "",
        "reopened": ticket.reopened or 0,
    }


def desk_escalation_notice(
    company: Company,
    ticket: Ticket,
    alerts: Sequence[Alert],
    level: int,
    overdue_since: datetime,
    channel_name: str,
    facts: DeskFacts,
) -> RenderedMail:
    """The next channel's alarm for a ticket nobody acknowledged: short enough for a Teams card.

    `ticket.ack_due_at` is already the next deadline (none after the last level).
    """
    if level < 1:
        raise ValueError(f"escalation level must be 1 or more, not {level}")
    check_company(company, ticket)
    ordered = same_tenant(ticket, alerts)
    # Most severe first: whoever picks this up on a phone sees what matters in the first lines.
    rank = {"high": 0, "medium": 1, "low": 2, "informational": 3}
    worst = sorted(ordered, key=lambda a: rank[severity_key(a.severity)])
    context = _ticket_header(company, ticket) | {
        "level": level,
        "overdue_since": jst_minute(overdue_since),
        "channel_name": channel_name,
        "alert_count": len(ordered),
        "alerts": [_desk_alert(a, ticket) for a in worst[:MAX_ESCALATION_ALERTS]],
        "more": max(len(ordered) - MAX_ESCALATION_ALERTS, 0),
        "incident_urls": sorted(
            {
                url
                for a in ordered
                if isinstance(a.raw, dict)
                and isinstance(url := a.raw.get("incidentWebUrl"), str)
                and url
            }
        ),
    }
    context |= ticket_facts(ticket, facts) | {"due_label": "次の確認期限"}
    subject = (
        f"[{ticket.priority}] 未確認・エスカレーション レベル{level} "
        f"#{ticket.id} {company.name}：{context['title']}"
    )
    return RenderedMail(subject, render("desk_escalation_notice.txt.j2", t=context))


# Events the desk workflow reports; any other event name is shown as it is given.
DESK_EVENTS_JA = {
    "reopened": "解決済みのチケットが、新しいアラートで再オープンされました",
    "priority_raised": "チケットの優先度が上がりました",
    "isolation_failed": "端末の隔離が完了しませんでした",
    "release_failed": "端末の隔離の解除が完了しませんでした",
    "closed": "解決済みのチケットがクローズされました",
    "resolved_as_test": "Defender でテストとして解決済みのアラートが、テストではなくなりました",
}
_DESK_EVENT_SHORT_JA = {
    "reopened": "再オープン",
    "priority_raised": "優先度変更",
    "isolation_failed": "隔離失敗",
    "release_failed": "隔離解除失敗",
    "closed": "クローズ",
    "resolved_as_test": "Defender で要再オープン",
}


def desk_ticket_update_notice(
    company: Company, ticket: Ticket, event: str, detail: str, facts: DeskFacts
) -> RenderedMail:
    """A short desk notice that something changed on a ticket (e.g. a resolved one reopened)."""
    check_company(company, ticket)
    key = event.strip().casefold()
    if not key:
        raise ValueError(f"a desk update for ticket {ticket.id} needs an event")
    context = (
        _ticket_header(company, ticket)
        | {
            "event": key,
            "event_text": DESK_EVENTS_JA.get(key, event.strip()),
            "detail": detail.strip(),
        }
        | ticket_facts(ticket, facts)
    )
    short = _DESK_EVENT_SHORT_JA.get(key, event.strip())
    subject = f"[{ticket.priority}] {short} #{ticket.id} {company.name}：{context['title']}"
    return RenderedMail(subject, render("desk_ticket_update_notice.txt.j2", t=context))


@dataclass(frozen=True, slots=True)
class ServiceAlarm:
    """What the desk is told about the service itself: a tenant parked or failing too long,
    a job failing again and again or no longer running, a company in its trial with more
    devices than its seats (`problem`: "parked", "failing", "job", "overdue" or "seats"); its
    recovery when `recovered_at` is set. The reason is the EDR's or the error's text, shown
    as text."""

    problem: str
    since: datetime
    reason: str = ""
    company_key: str = ""
    company_name: str = ""
    external_id: str = ""
    job: str = ""
    failures: int = 0
    recovered_at: datetime | None = None


_ALARM_HEADLINES_JA = {
    "parked": "テナントのポーリングを停止しています（要対応）",
    "failing": "テナントへの接続が失敗し続けています（自動で再試行中）",
    "job": "サービスの定期ジョブが失敗し続けています",
    "overdue": "サービスの定期ジョブが予定どおり実行されていません",
    "seats": "体験中の企業の端末数が、申込時の予定数または上限を超えています",
}
_RECOVERY_HEADLINES_JA = {
    "parked": "停止していたテナントのポーリングが再開しました",
    "failing": "テナントへの接続が回復しました",
    "job": "失敗していた定期ジョブが成功しました",
    "overdue": "止まっていた定期ジョブが再び実行されました",
    "seats": "端末数が予定数・上限の範囲内に戻りました",
}
_ALARM_SHORT_JA = {
    "parked": "テナント停止",
    "failing": "テナント接続障害",
    "job": "ジョブ失敗",
    "overdue": "ジョブ停止",
    "seats": "端末数超過",
}
_RECOVERY_SHORT_JA = {
    "parked": "テナント再開",
    "failing": "テナント接続回復",
    "job": "ジョブ回復",
    "overdue": "ジョブ再開",
    "seats": "端末数解消",
}
_ALARM_TODO_JA = {
    "parked": "原因（クライアントシークレット、同意、テナント ID など）を直してから、"
    "ポーリングを再開してください。",
    "failing": "理由を確認してください。接続情報の誤りなら直し、今すぐ試すには次を実行します。",
    "job": "サービスのログで原因を確認し、直ったら状況を確かめてください。",
    "overdue": "サービス（edrtrial serve）は動いていますが、このジョブが実行されていません。"
    "サービスのログを確認し、止まったままならサービスを再起動してください。",
    "seats": "企業に連絡し、予定外の端末の導入か、予定数の変更かを確認してください"
    "（上限を超える端末は体験の対象外です）。",
}


def _alarm_commands(alarm: ServiceAlarm) -> list[str]:
    if alarm.problem == "parked":
        return [f"edrtrial tenants resume {alarm.company_key}", "edrtrial status"]
    if alarm.problem == "failing":
        return [f"edrtrial poll --company {alarm.company_key}", "edrtrial status"]
    if alarm.problem == "seats":
        return ["edrtrial seats"]
    job, _, company = alarm.job.partition(":")
    if alarm.problem == "overdue":
        return ["edrtrial status"]
    if company:
        return ["edrtrial status", f"edrtrial poll --company {company}"]
    return ["edrtrial status", f"edrtrial run-job {job}"]


def desk_service_alarm(alarm: ServiceAlarm) -> RenderedMail:
    """The desk's notice that the service needs a person (or no longer does), told once."""
    if alarm.problem not in _ALARM_HEADLINES_JA:
        raise ValueError(f"unknown service alarm {alarm.problem!r}")
    recovered = alarm.recovered_at is not None
    headlines = _RECOVERY_HEADLINES_JA if recovered else _ALARM_HEADLINES_JA
    context = {
        "headline": headlines[alarm.problem],
        "company_key": alarm.company_key,
        "company_name": alarm.company_name,
        "external_id": alarm.external_id,
        "job": alarm.job,
        "since": jst_minute(alarm.since),
        "recovered_at": jst_minute(alarm.recovered_at) if alarm.recovered_at else "",
        "failures": 0 if recovered else alarm.failures,
        "reason": alarm.reason.strip(),
        "todo": "" if recovered else _ALARM_TODO_JA[alarm.problem],
        "commands": [] if recovered else _alarm_commands(alarm),
    }
    about = alarm.job or f"{alarm.company_name}（{alarm.company_key}）"
    short = _RECOVERY_SHORT_JA if recovered else _ALARM_SHORT_JA
    subject = f"{'[復旧]' if recovered else '[要対応]'} {short[alarm.problem]} {about}"
    return RenderedMail(subject, render("desk_service_alarm.txt.j2", a=context))
