"""The periodic detection report's data: everything the templates show, assembled in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from edrtrial.config import DeskConfig
from edrtrial.coverage import Coverage, TrialStage, coverage_at
from edrtrial.errors import TenantMismatchError
from edrtrial.models import Alert, Company, Device, Trial
from edrtrial.reports.advice import (
    Recommendation,
    SecurityActionPointer,
    recommendations_for,
    security_action,
)
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.vocabulary import (
    SEVERITY_JA,
    SEVERITY_ORDER,
    device_names,
    is_detection_test,
    ja_date,
    ja_date_weekday,
    jst_minute,
    plain_title,
    severity_key,
    ticket_state_ja,
)
from edrtrial.states import TicketState
from edrtrial.timeutil import as_utc, jst_date

ACTIVE_WINDOW_DAYS = 7
MAX_ROWS = 100  # a noisy week must not produce a mail nobody can read
MAX_QUIET_DEVICES = 20


@dataclass(frozen=True, slots=True)
class SeverityCount:
    """How many detections of one severity."""

    key: str
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
class QuietDevice:
    """A device with the EDR that has not been seen recently (switched off, away, or broken)."""

    name: str
    last_seen: str


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """The company's devices under the EDR."""

    onboarded: int
    active_recent: int
    active_window_days: int
    verified: int
    with_detections: int
    quiet: tuple[QuietDevice, ...]
    quiet_more: int


@dataclass(frozen=True, slots=True)
class DetectionReport:
    """A company's detection report for the JST days start..end, ready to render."""

    company_key: str
    company_name: str
    contact_name: str
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
    open_tickets: int
    headline: str
    severity_counts: tuple[SeverityCount, ...]
    detections: tuple[DetectionRow, ...]
    omitted: int
    devices: DeviceSummary
    recommendations: tuple[Recommendation, ...]
    security_action: SecurityActionPointer
    desk: DeskContacts


def _outcome(alert: Alert) -> str:
    if is_detection_test(alert):
        return "動作確認テスト（対応不要）"
    if alert.ticket is not None:
        return f"{ticket_state_ja(alert.ticket.state)}（受付番号 #{alert.ticket.id}）"
    if alert.suppressed_reason:
        return "確認の結果、対応は不要と判断しました"
    if alert.status.casefold() == "resolved":
        return "解決済み"
    if alert.triaged_at is not None:
        return "確認済み（緊急の対応は不要）"
    return "確認中"


def _row(alert: Alert) -> DetectionRow:
    key = severity_key(alert.severity)
    return DetectionRow(
        at=jst_minute(alert.created_at) if alert.created_at else "",
        device=device_names(alert),
        title=plain_title(alert),
        source_title=alert.title,
        severity_key=key,
        severity=SEVERITY_JA[key],
        outcome=_outcome(alert),
        is_test=is_detection_test(alert),
    )


def _shown(rows: list[DetectionRow]) -> tuple[DetectionRow, ...]:
    # Past the cap keep the most severe rows (still in time order); the count says what is left.
    if len(rows) <= MAX_ROWS:
        return tuple(rows)
    rank = {key: index for index, key in enumerate(SEVERITY_ORDER)}
    keep = sorted(range(len(rows)), key=lambda i: (rank[rows[i].severity_key], i))[:MAX_ROWS]
    return tuple(rows[i] for i in sorted(keep))


def _is_onboarded(device: Device) -> bool:
    return device.in_inventory and device.onboarding_status.casefold() == "onboarded"


def _device_summary(
    devices: Sequence[Device], alerts: Sequence[Alert], now: datetime
) -> DeviceSummary:
    onboarded = [d for d in devices if _is_onboarded(d)]
    since = as_utc(now) - timedelta(days=ACTIVE_WINDOW_DAYS)
    active = [d for d in onboarded if d.last_seen is not None and d.last_seen >= since]
    quiet = sorted((d for d in onboarded if d not in active), key=lambda d: d.name.casefold())
    named = {name.casefold() for a in alerts for name in a.device_names if name}
    return DeviceSummary(
        onboarded=len(onboarded),
        active_recent=len(active),
        active_window_days=ACTIVE_WINDOW_DAYS,
        verified=sum(1 for d in onboarded if d.detection_test_at is not None),
        with_detections=len(named),
        quiet=tuple(_quiet(d) for d in quiet[:MAX_QUIET_DEVICES]),
        quiet_more=max(len(quiet) - MAX_QUIET_DEVICES, 0),
    )


def _quiet(device: Device) -> QuietDevice:
    seen = ja_date(jst_date(device.last_seen)) if device.last_seen else "未確認"
    return QuietDevice(device.name or device.source_id, seen)


def _headline(total: int, tests: int, high: int, open_tickets: int) -> str:
    if total == 0:
        return "この期間、EDRによる検知はありませんでした。"
    parts = [f"この期間、EDRによる検知が{total}件ありました"]
    parts.append(f"（うち動作確認テスト{tests}件）。" if tests else "。")
    if high:
        parts.append(f"重要度「高」の検知が{high}件あります。")
    if open_tickets:
        parts.append(f"{open_tickets}件はインシデント対応窓口が対応中です。")
    else:
        parts.append("現在、対応中の案件はありません。")
    return "".join(parts)


def _trial_label(coverage: Coverage) -> str:
    if coverage.starts_on is None or coverage.ends_on is None:
        return ""
    span = f"{ja_date(coverage.starts_on)}〜{ja_date(coverage.ends_on)}"
    if coverage.stage is TrialStage.BEFORE:
        return f"{span}（開始前）"
    return f"{span}（終了）" if coverage.ended else f"{span}（残り{coverage.days_left}日）"


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
) -> DetectionReport:
    """One company's detections, devices and advice for the period, from its own rows.

    The caller reads the rows (`notify.report_mail.detection_report_for`); every alert and
    device must be of the company's tenant, which is checked here before a word is written.
    """
    if end < start:
        raise ValueError(f"report period ends ({end}) before it starts ({start})")
    strangers = [f"alert {a.id}" for a in alerts if a.tenant_id != tenant_id]
    strangers += [f"device {d.id}" for d in devices if d.tenant_id != tenant_id]
    if strangers:
        raise TenantMismatchError(
            f"{', '.join(strangers)} do not belong to {company.key}'s tenant {tenant_id}"
        )
    rows = [_row(alert) for alert in alerts]
    counts = {key: 0 for key in SEVERITY_ORDER}
    for row in rows:
        counts[row.severity_key] += 1
    open_tickets = {
        a.ticket.id for a in alerts if a.ticket is not None and TicketState(a.ticket.state).open
    }
    tests = sum(1 for row in rows if row.is_test)
    coverage = coverage_at(trial, now)  # what the company is promised as it reads the report
    return DetectionReport(
        company_key=company.key,
        company_name=company.name,
        contact_name=company.contact_name,
        recipient=company.contact_email,
        tenant_id=tenant_id,
        start=start,
        end=end,
        period_label=f"{ja_date(start)}〜{ja_date(end)}",
        period_label_long=f"{ja_date_weekday(start)}〜{ja_date_weekday(end)}",
        generated_at=jst_minute(now),
        trial_label=_trial_label(coverage),
        total=len(rows),
        tests=tests,
        open_tickets=len(open_tickets),
        headline=_headline(len(rows), tests, counts["high"], len(open_tickets)),
        severity_counts=tuple(SeverityCount(k, SEVERITY_JA[k], counts[k]) for k in SEVERITY_ORDER),
        detections=_shown(rows),
        omitted=max(len(rows) - MAX_ROWS, 0),
        devices=_device_summary(devices, alerts, now),
        recommendations=recommendations_for(alerts),
        security_action=security_action(),
        desk=desk_contacts(desk, coverage),
    )
