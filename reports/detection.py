"""The periodic (weekly, monthly) detection report's data: everything the mail and the PDF
show, assembled in one place from rows the caller read, in the company's language."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from edrtrial.config import DeskConfig, ProgrammeConfig, SlaConfig
from edrtrial.coverage import Coverage, TrialStage, coverage_at
from edrtrial.errors import ReportPeriodError, TenantMismatchError
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket, Trial
from edrtrial.reports.advice import (
    Recommendation,
    SecurityActionPointer,
    recommendations_for,
    security_action,
)
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.letterhead import Letterhead, letterhead
from edrtrial.reports.vocabulary import (
    ACTION_RESULT_EN,
    ACTION_RESULT_JA,
    CATEGORY_EN,
    CATEGORY_JA,
    OTHER_EN,
    OTHER_JA,
    SEVERITY_EN,
    SEVERITY_JA,
    SEVERITY_ORDER,
    action_label,
    action_result,
    category_key,
    device_label,
    device_names,
    is_detection_test,
    ja_date,
    jst_minute,
    plain_title,
    severity_key,
)
from edrtrial.states import TicketState
from edrtrial.timeutil import as_utc, jst_date, jst_day_bounds

SILENT_DAYS = 7  # a device unseen this long before the period's end is listed as silent
MAX_ROWS = 100  # a noisy month must not produce a report nobody can read
MAX_QUIET_DEVICES = 20
MAX_TICKETS = 50
KINDS = ("weekly", "monthly", "period")  # period: any other run of days, asked for by hand
_WEEKDAY = {"ja": "月火水木金土日", "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}

# Fixed wording per language; the templates only lay it out, so ja and en cannot drift apart.
WORDS: dict[str, dict[str, str]] = {
    "ja": {
        "colon": "：",
        "lp": "（",
        "rp": "）",
        "bullet": "・",
        "sp": "　",
        "comma": "、",
        "title_weekly": "EDR体験 週次検知レポート",
        "title_monthly": "EDR体験 月次検知レポート",
        "title_period": "EDR体験 検知レポート",
        "subject_weekly": "【EDR体験】週次検知レポート（{period}）{company}",
        "subject_monthly": "【EDR体験】月次検知レポート（{period}）{company}",
        "subject_period": "【EDR体験】検知レポート（{period}）{company}",
        "addressee": "{name} 様",
        "addressee_anonymous": "ご担当者 様",
        "period": "対象期間",
        "trial": "無料体験期間",
        "generated": "作成日時",
        "s_summary": "この期間のまとめ",
        "s_charts": "検知の推移と種類",
        "s_found": "検知の一覧",
        "s_desk": "インシデント対応窓口の対応",
        "s_devices": "端末の状況",
        "s_todo": "貴社にお願いしたいこと",
        "s_trial": "無料体験の残り期間と終了後のこと",
        "s_contact": "お問い合わせ",
        "desk_watch": "検知の内容の確認と対応は、運営事務局の{desk}が行っています。"
        "貴社で画面を見張っていただく必要はありません。",
        "severity": "重要度",
        "chip": "重要度 {label}",
        "count_unit": "{n} 件",
        "device_unit": "{n} 台",
        "chart_daily": "日別の検知件数（重要度別）",
        "chart_kinds": "検知の種類",
        "chart_count": "件数",
        "chart_day": "日付",
        "chart_none": "この期間の検知はないため、グラフはありません。",
        "col_at": "日時（日本時間）",
        "col_device": "端末",
        "col_what": "内容と意味",
        "col_state": "対応状況",
        "source_title": "EDRの表示名",
        "none_found": "この期間の検知はありません。EDRは引き続き貴社のパソコンを見守っています。",
        "omitted": "ほかに {n} 件の検知があります（重要度の低いものを省略しました）。"
        "詳しくはサポートデスクにお問い合わせください。",
        "col_ticket": "受付番号",
        "col_priority": "優先度",
        "col_ack": "受付から確認まで（目標）",
        "col_resolve": "解決まで",
        "no_tickets": "この期間、インシデント対応窓口が対応した案件はありません。",
        "sla_note": "目標時間は、事務局との取り決め（SLA）で定めた、案件を受け付けてから"
        "担当者が確認するまでの時間です。",
        "isolations": "端末の隔離",
        "no_isolations": "この期間、端末の隔離はありませんでした。",
        "col_action": "対応",
        "col_result": "結果",
        "dev_onboarded": "EDRが入っている端末",
        "dev_active": "期間の最終日までの{days}日間に動いていた端末",
        "dev_silent": "{days}日以上確認できていない端末（期間の最終日時点）",
        "dev_verified": "動作確認テストが済んだ端末",
        "dev_detected": "この期間に検知があった端末",
        "dev_seats": "申込台数 / 上限",
        "seats_value": "{planned} 台 / {cap} 台",
        "over_cap": "EDRが入っている端末が上限（{cap}台）を超えています。"
        "運営事務局にご相談ください。",
        "silent_intro": "次の端末は、期間の最終日までの{days}日間、"
        "EDRとの通信が確認できていません。"
        "電源を入れていない、社外に持ち出している、などの理由であれば問題ありません。"
        "心当たりがない場合は、サポートデスクにご相談ください。",
        "last_seen": "最後の確認：{at}",
        "never_seen": "未確認",
        "more_devices": "ほか {n} 台",
        "glossary": "用語：「EDR」はパソコンを見守り、不審な動きを見つけて知らせる仕組みです。"
        "「検知」はEDRが不審な動きを見つけたこと、「端末の隔離」は被害が広がらないように、"
        "そのパソコンをネットワークから遠隔で切り離すことです。",
        "made_by": "このレポートは {desk} が {at} に作成しました。",
        "phone_first": "パソコンの様子がおかしいときは、電源を切らずに、"
        "まず {phone} へお電話ください。",
        "desk_first": "パソコンの様子がおかしいときは、電源を切らずに、"
        "まずサポートデスクへご連絡ください。",
        "support_desk": "サポートデスク",
        "page": "ページ",
        # verdict and change
        "v_none": "この期間、EDRによる検知はありませんでした。",
        "v_watching": "EDRは引き続き、{devices}台の端末を見守っています。ご安心ください。",
        "v_total": "この期間、EDRによる検知が{total}件ありました",
        "v_tests": "（うち{tests}件は動作確認テストで、対応は不要です）。",
        "v_end": "。",
        "v_high": "重要度「高」の検知が{n}件ありました。",
        "v_worked": "{n}件はインシデント対応窓口が対応中です。",
        "v_waiting": "{n}件はインシデント対応窓口が受け付け、確認を待っています。",
        "v_all_done": "インシデント対応窓口が対応した案件は、すべて対応を終えています。",
        "v_nothing_open": "対応が必要な案件はありませんでした。",
        "v_isolated": "被害が広がらないよう、{n}台の端末をネットワークから隔離しました。",
        "prev_weekly": "前週",
        "prev_monthly": "前月",
        "prev_period": "直前の同じ日数（{days}日間）",
        "prev_short_weekly": "前週",
        "prev_short_monthly": "前月",
        "prev_short_period": "直前の{days}日間",
        "change_up": "{prev}より{n}件増えました（{prev_short}は{before}件）。",
        "change_down": "{prev}より{n}件減りました（{prev_short}は{before}件）。",
        "change_same": "{prev}と同じ件数でした。",
        "change_none": "前の期間は体験開始前のため、比較はありません。",
        # detection and ticket states
        "o_test": "動作確認テスト（対応不要）",
        "o_waiting": "受付済み・確認待ち（受付番号 #{id}）",
        "o_working": "対応中（受付番号 #{id}）",
        "o_done": "対応済み（受付番号 #{id}）",
        "o_suppressed": "確認の結果、対応は不要と判断しました",
        "o_resolved": "解決済み",
        "o_triaged": "確認済み（緊急の対応は不要）",
        "o_checking": "確認中",
        "t_waiting": "確認待ち",
        "t_working": "対応中",
        "t_done": "対応済み",
        "sla_met": "目標内",
        "sla_late": "目標超過",
        "sla_business": "営業時間で計測",
        "sla_pending": "未確認",
        "not_yet": "—",
        "minutes": "{n}分",
        "hours": "{h}時間{m}分",
        "days": "{d}日{h}時間",
        "target": "{n}分以内",
        # trial end
        "trial_left": "無料体験は{end}に終了します（残り{days}日）。",
        "trial_last_day": "無料体験は本日{end}で終了します。",
        "trial_before": "無料体験は{start}に始まります。",
        "trial_ended": "無料体験は{end}に終了しました。",
        "trial_continue": "終了後もEDRによるセキュリティ対策の継続を希望される場合は、"
        "運営事務局にご相談ください。"
        "受託事業者と契約し、EDRを継続することができます。",
        "trial_uninstall": "希望されない場合は、"
        "インストールを行ったEDRソフトウェアのアンインストールを、"
        "受託事業者がすべての端末から遠隔で実施いたします。貴社で操作していただく必要はありません。",
        "decided_continue": "貴社からは、終了後も継続するとのご連絡をいただいています。",
        "decided_offboard": "貴社からは、終了後は継続しないとのご連絡をいただいています。"
        "EDRは遠隔でアンインストールします。",
        "no_trial": "無料体験の期間はまだ決まっていません。",
    },
    "en": {
        "colon": ": ",
        "lp": " (",
        "rp": ")",
        "bullet": "- ",
        "sp": "  ",
        "comma": ", ",
        "title_weekly": "EDR trial: weekly detection report",
        "title_monthly": "EDR trial: monthly detection report",
        "title_period": "EDR trial: detection report",
        "subject_weekly": "[EDR trial] Weekly detection report ({period}) {company}",
        "subject_monthly": "[EDR trial] Monthly detection report ({period}) {company}",
        "subject_period": "[EDR trial] Detection report ({period}) {company}",
        "addressee": "Attn: {name}",
        "addressee_anonymous": "Attn: the EDR trial contact",
        "period": "Period",
        "trial": "Free trial",
        "generated": "Generated",
        "s_summary": "Summary of the period",
        "s_charts": "Detections over time and by kind",
        "s_found": "What was detected",
        "s_desk": "What the incident desk did",
        "s_devices": "Your devices",
        "s_todo": "What we ask you to do",
        "s_trial": "Days left in the trial and what happens at the end",
        "s_contact": "Contact",
        "desk_watch": "The secretariat's {desk} reviews and handles every detection. "
        "You do not need to watch any screen yourself.",
        "severity": "Severity",
        "chip": "{label}",
        "count_unit": "{n}",
        "device_unit": "{n}",
        "chart_daily": "Detections per day, by severity",
        "chart_kinds": "Detections by kind",
        "chart_count": "Detections",
        "chart_day": "Day",
        "chart_none": "There were no detections in this period, so there is no chart.",
        "col_at": "When (Japan time)",
        "col_device": "Device",
        "col_what": "What it means",
        "col_state": "Status",
        "source_title": "Name shown by the EDR",
        "none_found": "There were no detections in this period. The EDR "
        "keeps watching your computers.",
        "omitted": "There are {n} more detections (the less severe ones are left out). "
        "Ask the support desk for the details.",
        "col_ticket": "Case",
        "col_priority": "Priority",
        "col_ack": "Time to acknowledge (target)",
        "col_resolve": "Time to resolve",
        "no_tickets": "The incident desk handled no case for you in this period.",
        "sla_note": "The target is the agreed time (SLA) from receiving a case to an analyst "
        "acknowledging it.",
        "isolations": "Device isolations",
        "no_isolations": "No device was isolated in this period.",
        "col_action": "Action",
        "col_result": "Result",
        "dev_onboarded": "Devices with the EDR",
        "dev_active": "Devices active in the {days} days to the period's end",
        "dev_silent": "Devices not seen for {days} days or more (at the period's end)",
        "dev_verified": "Devices whose installation test passed",
        "dev_detected": "Devices with detections in this period",
        "dev_seats": "Planned / cap",
        "seats_value": "{planned} / {cap}",
        "over_cap": "More devices have the EDR than the cap ({cap}). "
        "Please contact the secretariat.",
        "silent_intro": "The EDR has not heard from these devices in the {days} days to the "
        "period's end. That is fine if they were switched off or out of the office; if not, "
        "please contact the support desk.",
        "last_seen": "last seen {at}",
        "never_seen": "never",
        "more_devices": "and {n} more",
        "glossary": "Terms: the EDR watches your computers and reports suspicious activity. "
        "A detection is something suspicious the EDR found. Isolating a device cuts it off "
        "from the network remotely so that damage cannot spread.",
        "made_by": "This report was prepared by {desk} on {at}.",
        "phone_first": "If a computer behaves strangely, do not switch it off: call {phone} first.",
        "desk_first": "If a computer behaves strangely, do not switch it "
        "off: contact the support desk first.",
        "support_desk": "Support desk",
        "page": "Page",
        "v_none": "There were no detections in this period.",
        "v_watching": "The EDR keeps watching your {devices} devices: "
        "nothing needs your attention.",
        "v_total": "The EDR made {total} detections in this period",
        "v_tests": " ({tests} of them installation tests, which need nothing from you).",
        "v_end": ".",
        "v_high": "{n} were of high severity.",
        "v_worked": "The incident desk is working on {n} case(s).",
        "v_waiting": "{n} case(s) are received and waiting for the incident desk.",
        "v_all_done": "Every case the incident desk took up has been handled.",
        "v_nothing_open": "Nothing needed handling.",
        "v_isolated": "{n} device(s) were isolated from the network so "
        "that damage could not spread.",
        "prev_weekly": "the previous week",
        "prev_monthly": "the previous month",
        "prev_period": "the {days} days before",
        "prev_short_weekly": "the previous week",
        "prev_short_monthly": "the previous month",
        "prev_short_period": "the {days} days before",
        "change_up": "{n} more than {prev} ({before}).",
        "change_down": "{n} fewer than {prev} ({before}).",
        "change_same": "The same number as {prev}.",
        "change_none": "No comparison: the previous period was before the trial.",
        "o_test": "Installation test (nothing to do)",
        "o_waiting": "Received, waiting for the desk (case #{id})",
        "o_working": "In progress (case #{id})",
        "o_done": "Handled (case #{id})",
        "o_suppressed": "Reviewed: no action needed",
        "o_resolved": "Resolved",
        "o_triaged": "Reviewed (nothing urgent)",
        "o_checking": "Being reviewed",
        "t_waiting": "Waiting",
        "t_working": "In progress",
        "t_done": "Handled",
        "sla_met": "within target",
        "sla_late": "over target",
        "sla_business": "counted in business hours",
        "sla_pending": "not yet",
        "not_yet": "-",
        "minutes": "{n} min",
        "hours": "{h} h {m} min",
        "days": "{d} d {h} h",
        "target": "within {n} min",
        "trial_left": "Your free trial ends on {end} ({days} days left).",
        "trial_last_day": "Your free trial ends today, {end}.",
        "trial_before": "Your free trial starts on {start}.",
        "trial_ended": "Your free trial ended on {end}.",
        "trial_continue": "If you want to keep the EDR after the trial, contact the secretariat: "
        "you can continue by contracting with the vendor directly.",
        "trial_uninstall": "Otherwise the vendor uninstalls the EDR software remotely from every "
        "computer it was installed on. You do not need to do anything.",
        "decided_continue": "You told us that you will continue after the trial.",
        "decided_offboard": "You told us that you will not continue: the EDR will be uninstalled "
        "remotely.",
        "no_trial": "Your trial dates are not set yet.",
    },
}


@dataclass(frozen=True, slots=True)
class SeverityCount:
    """How many detections of one severity."""

    key: str
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class DayCount:
    """One Tokyo day of the period: its detections by severity, in SEVERITY_ORDER."""

    day: date
    label: str
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KindCount:
    """Detections of one kind, named in plain words (the chart's short label)."""

    label: str
    count: int


@dataclass(frozen=True, slots=True)
class DetectionRow:
    """One detection as the company reads it."""

    at: str
    device: str
    title: str
    source_title: str
    severity_key: str
    severity: str
    outcome: str
    is_test: bool


@dataclass(frozen=True, slots=True)
class TicketRow:
    """One case of the desk: what, how urgent, where it stands, how fast against the SLA."""

    number: int
    what: str
    priority: str
    state: str
    acknowledged: str
    target: str
    sla: str  # "met", "late", "business" or "pending"
    sla_label: str
    resolved: str


@dataclass(frozen=True, slots=True)
class IsolationRow:
    """A device cut off from the network in the period, and whether it happened."""

    at: str
    device: str
    action: str
    result: str


@dataclass(frozen=True, slots=True)
class QuietDevice:
    """A device with the EDR that has not been seen recently (switched off, away, or broken)."""

    name: str
    last_seen: str


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """The company's devices under the EDR, as they stood at the period's end."""

    onboarded: int
    active_recent: int
    silent: int
    active_window_days: int
    verified: int
    with_detections: int
    planned_seats: int
    seat_cap: int
    over_cap: bool
    quiet: tuple[QuietDevice, ...]
    quiet_more: int


@dataclass(frozen=True, slots=True)
class DetectionReport:
    """A company's detection report for the JST days start..end, ready to render."""

    language: str
    kind: str
    words: Mapping[str, str]
    title: str
    subject: str
    letterhead: Letterhead
    company_key: str
    company_name: str
    salutation: str  # the line under the company: "name 様", "Attn: name"
    recipient: str
    tenant_id: int | None
    start: date
    end: date
    period_label: str
    period_label_long: str
    generated_at: str
    trial_label: str
    total: int
    tests: int
    previous_total: int | None  # None: the period before is not one to compare with
    open_tickets: int
    worked_on: int
    verdict: str
    change: str
    severity_counts: tuple[SeverityCount, ...]
    days: tuple[DayCount, ...]
    kinds: tuple[KindCount, ...]
    detections: tuple[DetectionRow, ...]
    omitted: int
    tickets: tuple[TicketRow, ...]
    isolations: tuple[IsolationRow, ...]
    devices: DeviceSummary
    recommendations: tuple[Recommendation, ...]
    security_action: SecurityActionPointer
    trial_lines: tuple[str, ...]
    desk: DeskContacts


def period_kind(start: date, end: date, *, monthly: bool = False) -> str:
    """The report a period asked for by hand is: seven days a weekly report, a whole
    calendar month (or `monthly`) a monthly one, any other run of days a "period" report,
    titled and compared as what it is (a 30-day report is no week, its 30 days before no
    "previous week")."""
    whole_month = (
        start.day == 1
        and (start.year, start.month) == (end.year, end.month)
        and end.day == calendar.monthrange(end.year, end.month)[1]
    )
    if monthly or whole_month:
        return "monthly"
    return "weekly" if (end - start).days + 1 == 7 else "period"


def comparable(before: tuple[date, date], trial: Trial | None) -> bool:
    """Whether the period before (`previous_period`) can be compared with: only days of the
    company's trial hold all of its detections (a tenant's first poll fetches back to the
    trial's start, so a tenant connected late still has them). Before the trial the store
    holds nothing, and "20 more than the week before (0)" would read as an attack that grew."""
    return trial is not None and trial.starts_on <= before[0] and before[1] <= trial.ends_on


def previous_period(start: date, end: date, kind: str) -> tuple[date, date]:
    """The period the change is counted against: the calendar month before a whole month,
    else the same number of days just before."""
    last_day = calendar.monthrange(end.year, end.month)[1]
    if kind == "monthly" and start.day == 1 and (start.year, start.month) == (end.year, end.month):
        if end.day == last_day:
            before_end = start - timedelta(days=1)
            return before_end.replace(day=1), before_end
    length = (end - start).days + 1
    return start - timedelta(days=length), start - timedelta(days=1)


def _date(value: date, language: str) -> str:
    return ja_date(value) if language == "ja" else value.strftime("%d %b %Y")


def _date_weekday(value: date, language: str) -> str:
    weekday = _WEEKDAY[language][value.weekday()]
    if language == "ja":
        return f"{ja_date(value)}（{weekday}）"
    return f"{weekday} {_date(value, language)}"


def _worked_on(state: str) -> bool:
    """Someone at the desk has taken the ticket up: only then is it "対応中"."""
    return TicketState(state) in (TicketState.ACKNOWLEDGED, TicketState.IN_PROGRESS)


def _ticket_state(state: str, words: Mapping[str, str]) -> str:
    value = TicketState(state)
    if value.open:
        return words["t_working"] if _worked_on(state) else words["t_waiting"]
    return words["t_done"]


def _outcome(alert: Alert, words: Mapping[str, str]) -> str:
    if is_detection_test(alert):
        return words["o_test"]
    ticket = alert.ticket
    if ticket is not None:
        state = TicketState(ticket.state)
        if not state.open:
            return words["o_done"].format(id=ticket.id)
        key = "o_working" if _worked_on(ticket.state) else "o_waiting"
        return words[key].format(id=ticket.id)
    if alert.suppressed_reason:
        return words["o_suppressed"]
    if alert.status.casefold() == "resolved":
        return words["o_resolved"]
    if alert.triaged_at is not None:
        return words["o_triaged"]
    return words["o_checking"]


def _row(alert: Alert, language: str, words: Mapping[str, str]) -> DetectionRow:
    key = severity_key(alert.severity)
    severities = SEVERITY_EN if language == "en" else SEVERITY_JA
    return DetectionRow(
        at=jst_minute(alert.created_at) if alert.created_at else "",
        device=device_names(alert, language),
        title=plain_title(alert, language),
        source_title=alert.title,
        severity_key=key,
        severity=severities[key],
        outcome=_outcome(alert, words),
        is_test=is_detection_test(alert),
    )


def _shown(rows: list[DetectionRow]) -> tuple[DetectionRow, ...]:
    # Past the cap keep the most severe rows (still in time order); the count says what is left.
    if len(rows) <= MAX_ROWS:
        return tuple(rows)
    rank = {key: index for index, key in enumerate(SEVERITY_ORDER)}
    keep = sorted(range(len(rows)), key=lambda i: (rank[rows[i].severity_key], i))[:MAX_ROWS]
    return tuple(rows[i] for i in sorted(keep))


def _short_kind(alert: Alert, language: str) -> str:
    """A kind's name short enough for a chart axis: the plain words without their gloss."""
    if is_detection_test(alert):
        return "動作確認テスト" if language == "ja" else "Installation test"
    table, other = (CATEGORY_JA, OTHER_JA) if language == "ja" else (CATEGORY_EN, OTHER_EN)
    key = category_key(alert.category or "")
    if key not in table and "phish" in (alert.title or "").casefold():
        key = "phishing"
    label = table.get(key, other)
    return label.split("（")[0] if language == "ja" else label.split(" (")[0]


def _kinds(alerts: Sequence[Alert], language: str) -> tuple[KindCount, ...]:
    counts: dict[str, int] = {}
    for alert in alerts:
        label = _short_kind(alert, language)
        counts[label] = counts.get(label, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(KindCount(label, count) for label, count in ordered)


def _days(rows: Sequence[Alert], start: date, end: date, language: str) -> tuple[DayCount, ...]:
    by_day: dict[date, list[int]] = {}
    for alert in rows:
        if alert.created_at is None:
            continue
        day = jst_date(alert.created_at)
        by_day.setdefault(day, [0] * len(SEVERITY_ORDER))[
            SEVERITY_ORDER.index(severity_key(alert.severity))
        ] += 1
    days = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        label = f"{day.month}/{day.day}"
        days.append(DayCount(day, label, tuple(by_day.get(day, [0] * len(SEVERITY_ORDER)))))
    return tuple(days)


def _duration(delta: timedelta, words: Mapping[str, str]) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return words["minutes"].format(n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return words["hours"].format(h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return words["days"].format(d=days, h=hours)


def _ticket_row(
    ticket: Ticket,
    alerts: Sequence[Alert],
    sla: SlaConfig,
    trial: Trial | None,
    language: str,
    words: Mapping[str, str],
) -> TicketRow:
    """The ticket against the SLA: the minutes to acknowledge for its priority.

    The desk counts a ticket on the 24/7 clock when its priority is around the clock and
    the company was in its trial; otherwise on business hours, which only the desk's
    calendar can count: a wall-clock time within the target is met either way, a longer
    one is shown as counted in business hours rather than judged here.
    """
    # The config's priorities are plain strings ("P1"…): look the ticket's up as written.
    minutes = {str(key): value for key, value in sla.acknowledge_minutes.items()}
    target = minutes.get(ticket.priority)
    around = (
        ticket.priority in [str(p) for p in sla.around_the_clock]
        and coverage_at(trial, ticket.created_at).in_trial
        and target is not None
    )
    acknowledged_at = ticket.acknowledged_at or (
        ticket.resolved_at if not TicketState(ticket.state).open else None
    )
    if acknowledged_at is None:
        acknowledged, verdict = words["not_yet"], "pending"
    else:
        elapsed = as_utc(acknowledged_at) - as_utc(ticket.created_at)
        acknowledged = _duration(elapsed, words)
        if target is None:
            verdict = "business"
        elif elapsed <= timedelta(minutes=target):
            verdict = "met"
        else:
            verdict = "late" if around else "business"
    resolved = words["not_yet"]
    if ticket.resolved_at is not None:
        resolved = _duration(as_utc(ticket.resolved_at) - as_utc(ticket.created_at), words)
    ticket_alerts = [a for a in alerts if a.ticket_id == ticket.id] or list(ticket.alerts)
    what = plain_title(ticket_alerts[0], language) if ticket_alerts else ""
    return TicketRow(
        number=ticket.id,
        what=what,
        priority=ticket.priority,
        state=_ticket_state(ticket.state, words),
        acknowledged=acknowledged,
        target=words["target"].format(n=target) if target else words["not_yet"],
        sla=verdict,
        sla_label=words[f"sla_{verdict}"],
        resolved=resolved,
    )


def _isolations(
    actions: Sequence[ResponseAction], language: str, start: date, end: date
) -> tuple[IsolationRow, ...]:
    results = ACTION_RESULT_EN if language == "en" else ACTION_RESULT_JA
    lower, upper = jst_day_bounds(start, end)
    rows = []
    for action in sorted(actions, key=lambda a: (as_utc(a.created_at), a.id or 0)):
        if action.kind.casefold() not in ("isolate", "release"):
            continue
        if not lower <= as_utc(action.created_at) < upper:
            continue
        result = action_result(action.status)
        if result == "not_taken":
            continue
        rows.append(
            IsolationRow(
                at=jst_minute(action.created_at),
                device=device_label(action.device.name if action.device else "", language),
                action=action_label(action.kind, language),
                result=results[result],
            )
        )
    return tuple(rows)


def _is_onboarded(device: Device) -> bool:
    return device.in_inventory and device.onboarding_status.casefold() == "onboarded"


def _device_summary(
    company: Company,
    devices: Sequence[Device],
    alerts: Sequence[Alert],
    end: date,
    language: str,
    words: Mapping[str, str],
) -> DeviceSummary:
    """Devices as they stood at the period's end: a device seen in the SILENT_DAYS before
    the end of its last Tokyo day is active; one unseen longer is silent, whenever the
    report is made (a report sent late must not call last month's devices silent)."""
    onboarded = [d for d in devices if _is_onboarded(d)]
    period_end = jst_day_bounds(end, end)[1]
    since = period_end - timedelta(days=SILENT_DAYS)
    active = [d for d in onboarded if d.last_seen is not None and as_utc(d.last_seen) >= since]
    quiet = sorted((d for d in onboarded if d not in active), key=lambda d: d.name.casefold())
    named = {name.casefold() for a in alerts for name in a.device_names if name}
    return DeviceSummary(
        onboarded=len(onboarded),
        active_recent=len(active),
        silent=len(quiet),
        active_window_days=SILENT_DAYS,
        verified=sum(1 for d in onboarded if d.detection_test_at is not None),
        with_detections=len(named),
        planned_seats=company.planned_seats,
        seat_cap=company.seat_cap,
        over_cap=len(onboarded) > company.seat_cap,
        quiet=tuple(_quiet(d, language, words) for d in quiet[:MAX_QUIET_DEVICES]),
        quiet_more=max(len(quiet) - MAX_QUIET_DEVICES, 0),
    )


def _quiet(device: Device, language: str, words: Mapping[str, str]) -> QuietDevice:
    seen = _date(jst_date(device.last_seen), language) if device.last_seen else words["never_seen"]
    return QuietDevice(device_label(device.name or device.source_id, language), seen)


def _verdict(
    words: Mapping[str, str],
    *,
    total: int,
    tests: int,
    high: int,
    worked_on: int,
    waiting: int,
    handled: int,
    isolated: int,
    devices: int,
) -> str:
    """One paragraph a non-IT reader can stop at: how many, how serious, who is on it."""
    joiner = "" if words is WORDS["ja"] else " "
    if total == 0:
        watching = [words["v_watching"].format(devices=devices)] if devices else []
        return joiner.join([words["v_none"], *watching])
    ending = words["v_tests"].format(tests=tests) if tests else words["v_end"]
    parts = [words["v_total"].format(total=total) + ending]
    if high:
        parts.append(words["v_high"].format(n=high))
    if isolated:
        parts.append(words["v_isolated"].format(n=isolated))
    if worked_on:
        parts.append(words["v_worked"].format(n=worked_on))
    if waiting:
        parts.append(words["v_waiting"].format(n=waiting))
    if not worked_on and not waiting:
        parts.append(words["v_all_done"] if handled else words["v_nothing_open"])
    return joiner.join(parts)


def _change(words: Mapping[str, str], kind: str, total: int, before: int | None, days: int) -> str:
    if before is None:
        return words["change_none"]
    prev = words[f"prev_{kind}"].format(days=days)
    short = words[f"prev_short_{kind}"].format(days=days)
    if total > before:
        return words["change_up"].format(
            prev=prev, prev_short=short, n=total - before, before=before
        )
    if total < before:
        return words["change_down"].format(
            prev=prev, prev_short=short, n=before - total, before=before
        )
    return words["change_same"].format(prev=prev)


def _trial_label(coverage: Coverage, language: str) -> str:
    if coverage.starts_on is None or coverage.ends_on is None:
        return ""
    span = f"{_date(coverage.starts_on, language)} – {_date(coverage.ends_on, language)}"
    if language == "ja":
        span = f"{ja_date(coverage.starts_on)}〜{ja_date(coverage.ends_on)}"
    if coverage.stage is TrialStage.BEFORE:
        return f"{span}（開始前）" if language == "ja" else f"{span} (not started)"
    if coverage.ended:
        return f"{span}（終了）" if language == "ja" else f"{span} (ended)"
    days = coverage.days_left
    return f"{span}（残り{days}日）" if language == "ja" else f"{span} ({days} days left)"


def _trial_lines(coverage: Coverage, language: str, words: Mapping[str, str]) -> tuple[str, ...]:
    """Days left and what the end brings, in the programme's words (continue with the
    vendor, or the EDR uninstalled remotely from every computer)."""
    if coverage.starts_on is None or coverage.ends_on is None:
        return (words["no_trial"],)
    end = _date(coverage.ends_on, language)
    if coverage.stage is TrialStage.BEFORE:
        lines = [words["trial_before"].format(start=_date(coverage.starts_on, language))]
    elif coverage.ended:
        return (words["trial_ended"].format(end=end),)
    elif coverage.days_left == 0:
        lines = [words["trial_last_day"].format(end=end)]
    else:
        lines = [words["trial_left"].format(end=end, days=coverage.days_left)]
    if coverage.decision == "continue":
        lines.append(words["decided_continue"])
    elif coverage.decision == "offboard":
        lines.append(words["decided_offboard"])
    else:
        lines.extend((words["trial_continue"], words["trial_uninstall"]))
    return tuple(lines)


def build_detection_report(
    company: Company,
    tenant_id: int | None,
    alerts: Sequence[Alert],
    devices: Sequence[Device],
    trial: Trial | None,
    start: date,
    end: date,
    *,
    now: datetime,
    desk: DeskConfig,
    programme: ProgrammeConfig | None = None,
    sla: SlaConfig | None = None,
    kind: str = "weekly",
    previous_total: int | None = 0,
    actions: Sequence[ResponseAction] = (),
) -> DetectionReport:
    """One company's detections, desk work, devices and advice for the period, from its rows.

    The caller reads the rows (`notify.report_mail.detection_report_for`); every alert,
    device and action must be of the company's tenant, which is checked here before a word
    is written. A period that has not ended (its last Tokyo day after today's at `now`) is
    refused: its figures would be partial, and the company would read them as final.
    """
    if end < start:
        raise ReportPeriodError(f"report period ends ({end}) before it starts ({start})")
    if end > jst_date(now):
        raise ReportPeriodError(
            f"report period {start}..{end} ends after today ({jst_date(now)}, Tokyo): "
            "a report covers days that have passed"
        )
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r} (weekly, monthly or period)")
    strangers = [f"alert {a.id}" for a in alerts if a.tenant_id != tenant_id]
    strangers += [f"device {d.id}" for d in devices if d.tenant_id != tenant_id]
    strangers += [f"action {x.id}" for x in actions if x.tenant_id != tenant_id]
    strangers += [
        f"ticket {a.ticket.id}" for a in alerts if a.ticket and a.ticket.tenant_id != tenant_id
    ]
    if strangers:
        raise TenantMismatchError(
            f"{', '.join(strangers)} do not belong to {company.key}'s tenant {tenant_id}"
        )
    language = "en" if company.language == "en" else "ja"
    words = WORDS[language]
    programme = programme or ProgrammeConfig()
    sla = sla or SlaConfig()
    rows = [_row(alert, language, words) for alert in alerts]
    counts = {key: 0 for key in SEVERITY_ORDER}
    for row in rows:
        counts[row.severity_key] += 1
    tickets: dict[int, Ticket] = {}
    for alert in alerts:
        if alert.ticket is not None:
            tickets.setdefault(alert.ticket.id, alert.ticket)
    open_ids = {t.id for t in tickets.values() if TicketState(t.state).open}
    worked = {t.id for t in tickets.values() if _worked_on(t.state)}
    tests = sum(1 for row in rows if row.is_test)
    coverage = coverage_at(trial, now)  # what the company is promised as it reads the report
    isolations = _isolations(actions, language, start, end)
    summary = _device_summary(company, devices, alerts, end, language, words)
    ticket_rows = tuple(
        _ticket_row(t, alerts, sla, trial, language, words)
        for t in sorted(tickets.values(), key=lambda t: t.id)[:MAX_TICKETS]
    )
    title = words[f"title_{kind}"]
    period_label = (
        f"{ja_date(start)}〜{ja_date(end)}"
        if language == "ja"
        else f"{_date(start, language)} – {_date(end, language)}"
    )
    severities = SEVERITY_EN if language == "en" else SEVERITY_JA
    lower, upper = jst_day_bounds(start, end)
    isolated = len(
        {
            x.device_id
            for x in actions
            if x.kind.casefold() == "isolate"
            and action_result(x.status) in ("done", "running")
            and lower <= as_utc(x.created_at) < upper
        }
    )
    contact = company.contact_name
    return DetectionReport(
        language=language,
        kind=kind,
        words=words,
        title=title,
        subject=words[f"subject_{kind}"].format(period=period_label, company=company.name),
        letterhead=letterhead(programme),
        company_key=company.key,
        company_name=company.name,
        salutation=words["addressee"].format(name=contact)
        if contact
        else words["addressee_anonymous"],
        recipient=company.contact_email,
        tenant_id=tenant_id,
        start=start,
        end=end,
        period_label=period_label,
        period_label_long=(
            f"{_date_weekday(start, language)}〜{_date_weekday(end, language)}"
            if language == "ja"
            else f"{_date_weekday(start, language)} – {_date_weekday(end, language)}"
        ),
        generated_at=jst_minute(now),
        trial_label=_trial_label(coverage, language),
        total=len(rows),
        tests=tests,
        previous_total=previous_total,
        open_tickets=len(open_ids),
        worked_on=len(worked),
        verdict=_verdict(
            words,
            total=len(rows),
            tests=tests,
            high=counts["high"],
            worked_on=len(worked),
            waiting=len(open_ids - worked),
            handled=len(tickets) - len(open_ids),
            isolated=isolated,
            devices=summary.onboarded,
        ),
        change=_change(words, kind, len(rows), previous_total, (end - start).days + 1),
        severity_counts=tuple(SeverityCount(k, severities[k], counts[k]) for k in SEVERITY_ORDER),
        days=_days(alerts, start, end, language),
        kinds=_kinds(alerts, language),
        detections=_shown(rows),
        omitted=max(len(rows) - MAX_ROWS, 0),
        tickets=ticket_rows,
        isolations=isolations,
        devices=summary,
        recommendations=recommendations_for(alerts, language),
        security_action=security_action(language),
        trial_lines=_trial_lines(coverage, language, words),
        desk=desk_contacts(desk, coverage, language),
    )
