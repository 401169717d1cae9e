"""The configuration file (TOML), validated so that a mistake names its file and key."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edrtrial.errors import ConfigError
from edrtrial.secrets import SecretRef
from edrtrial.transport import is_loopback, require_https

CONFIG_ENV = "EDRTRIAL_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///var/edrtrial.db"


class SandboxConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    state_dir: Path = Path("var/sandbox")
    alert_interval_seconds: float = Field(30.0, gt=0)
    seed: int = 7
    tenants: int = Field(3, ge=1, le=1000)


class SmtpConfig(_Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretRef | None = None
    timeout_seconds: float = Field(30.0, gt=0)

    @field_validator("password")
    @classmethod
    def _password_over_tls(cls, value: str | None, info: Any) -> str | None:
        # Over loopback the password never leaves the machine (a local relay, a test server);
        # anywhere else it would cross the network readable by anyone on the path.
        data = info.data
        tls = data.get("starttls") or data.get("ssl")
        if value is not None and not tls and not is_loopback(str(data.get("host", ""))):
            raise ValueError(
                "a password needs TLS: set starttls = true (port 587) or ssl = true (port "
                "465); without TLS a password is sent only to 127.0.0.1, ::1 or localhost"
            )
        return value


class MailConfig(_Strict):
    from_address: EmailStr
    from_name: str = ""
    outbox_dir: Path = Path("var/mail")
    smtp: SmtpConfig | None = None
    max_attempts: int = Field(8, ge=1)


_CHANNEL_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class ChannelConfig(_Strict):
    """Somewhere the desk is told: a mailbox, a Teams incoming webhook, or a signed webhook.

    Webhook URLs carry their own credentials, so like secrets they are references.
    """

    name: str = Field(pattern=_CHANNEL_NAME)
    kind: Literal["mail", "teams", "webhook"]
    to: EmailStr | None = None
    url: SecretRef | None = None
    signing_secret: SecretRef | None = None

    @field_validator("signing_secret")
    @classmethod
    def _only_webhooks_sign(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("kind") != "webhook":
            raise ValueError("only a 'webhook' channel is signed")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        if self.kind == "mail" and self.to is None:
            raise ValueError(f"channel {self.name!r}: a mail channel needs `to`")
        if self.kind != "mail" and self.url is None:
            raise ValueError(f"channel {self.name!r}: a {self.kind} channel needs `url`")
        if self.kind == "webhook" and self.signing_secret is None:
            raise ValueError(f"channel {self.name!r}: a webhook channel needs `signing_secret`")
        return self


class DeskConfig(_Strict):
    name: str
    email: EmailStr
    phone: str = ""
    hours: str = ""
    incident_desk_phone: str = ""
    # Escalation order: a ticket is first told to its playbook's channel (else the first),
    # and an unacknowledged one moves one step down this list at each missed deadline.
    # Empty: one mail channel, "desk", to `email`.
    channels: list[ChannelConfig] = Field(default_factory=list)
    reopen_days: int = Field(14, ge=0)  # a new alert reopens a ticket resolved this recently
    close_after_days: int = Field(7, ge=0)  # resolved tickets close by themselves after this
    # Isolating or releasing a device silent this long warns the operator (the EDR holds
    # the action until the device reports again); it is not refused.
    silent_device_days: int = Field(3, ge=1)
    # A send without an answer is failed only if no action appears at the EDR this long after.
    reconcile_minutes: int = Field(10, ge=1, le=24 * 60)
    # An offboarded device still reporting this long after the EDR's success is flagged.
    offboarding_flag_days: int = Field(3, ge=1)
    # The service's own health: a tenant failing this long, a job failing this long or this
    # many times in a row, an outbox message waiting this long, needs a person (`edrtrial
    # status` exits 1; the desk is told of the first two on its first channel).
    tenant_alert_minutes: int = Field(30, ge=1)
    job_alert_failures: int = Field(3, ge=1)
    outbox_alert_minutes: int = Field(30, ge=1)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [c.name for c in value]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"channel names must be unique: {', '.join(doubled)}")
        return value

    def escalation_channels(self) -> list[ChannelConfig]:
        """The channels in escalation order (the implicit desk mailbox when none are set)."""
        return list(self.channels) or [ChannelConfig(name="desk", kind="mail", to=self.email)]


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")


class CalendarConfig(_Strict):
    """The support desk's business calendar (Asia/Tokyo); public holidays come from jpholiday."""

    opens: str = "09:00"
    closes: str = "17:00"
    # Inclusive MM-DD range across the new year; [] for no closure.
    year_end_closure: list[str] = Field(default_factory=lambda: ["12-29", "01-03"])
    closed_days: list[date] = Field(default_factory=list)  # company-specific extra days off

    @field_validator("opens", "closes")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must look like '09:00' (HH:MM in Asia/Tokyo)")
        return value

    @field_validator("year_end_closure")
    @classmethod
    def _closure(cls, value: list[str]) -> list[str]:
        if value and (len(value) != 2 or not all(_MMDD.match(v) for v in value)):
            raise ValueError('must be [] or two MM-DD days, e.g. ["12-29", "01-03"]')
        return value

    @model_validator(mode="after")
    def _opens_before_closing(self) -> CalendarConfig:
        if self.opens >= self.closes:
            raise ValueError(f"calendar opens at {self.opens} but closes at {self.closes}")
        return self


Priority = Literal["P1", "P2", "P3", "P4"]


def _default_ack_minutes() -> dict[Priority, int]:
    return {"P1": 30, "P2": 120, "P3": 480, "P4": 2400}


def _default_around_the_clock() -> list[Priority]:
    return ["P1", "P2"]


class SlaConfig(_Strict):
    """Minutes to acknowledge a ticket, per priority, counted on the ticket's calendar.

    During a trial, P1/P2 tickets run on the 24/7 incident desk's clock; the others (and
    every ticket after the trial) on the support desk's business hours.
    """

    acknowledge_minutes: dict[Priority, int] = Field(default_factory=_default_ack_minutes)
    around_the_clock: list[Priority] = Field(default_factory=_default_around_the_clock)

    @field_validator("acknowledge_minutes")
    @classmethod
    def _all_priorities(cls, value: dict[str, int]) -> dict[str, int]:
        missing = [p for p in ("P1", "P2", "P3", "P4") if p not in value]
        if missing:
            raise ValueError(f"missing priorities: {', '.join(missing)}")
        if any(minutes < 1 for minutes in value.values()):
            raise ValueError("every deadline must be at least 1 minute")
        return value


_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun) ([01]\d|2[0-3]):([0-5]\d)$")
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MONTHLY = re.compile(r"^([1-9]|1\d|2[0-8]) ([01]\d|2[0-3]):([0-5]\d)$")


class SchedulesConfig(_Strict):
    poll_seconds: int = Field(60, ge=5)
    inventory_minutes: int = Field(60, ge=1)
    outbox_seconds: int = Field(15, ge=1)
    desk_seconds: int = Field(60, ge=5)  # SLA deadlines, re-escalation, closing resolved tickets
    parallel_tenants: int = Field(8, ge=1, le=64)
    weekly_report: str = "mon 09:00"
    # The monthly report goes on this day of the month (1-28) at this time, for last month.
    monthly_report: str = "1 09:00"
    seat_report: str = "mon 08:30"  # the secretariat's weekly seat report
    trial_lifecycle: str = "06:00"

    @field_validator("monthly_report")
    @classmethod
    def _monthly(cls, value: str) -> str:
        if not _MONTHLY.match(value):
            raise ValueError(
                "must look like '1 09:00' (day of the month 1-28, HH:MM in Asia/Tokyo)"
            )
        return value

    @field_validator("weekly_report", "seat_report")
    @classmethod
    def _weekly(cls, value: str) -> str:
        if not _WEEKLY.match(value):
            raise ValueError("must look like 'mon 09:00' (day, then HH:MM in Asia/Tokyo)")
        return value

    @field_validator("trial_lifecycle")
    @classmethod
    def _daily(cls, value: str) -> str:
        if not _DAILY.match(value):
            raise ValueError("must look like '06:00' (HH:MM in Asia/Tokyo)")
        return value


class ReportsConfig(_Strict):
    """Which reports go out by themselves, and where every report sent is kept.

    Each report mailed (a company's weekly or monthly report, an incident report, the
    secretariat's seat report) is archived here as the file that was attached, with a
    record in the store of who received it and when: what a company was told can be shown.
    """

    archive_dir: Path = Path("var/reports")
    weekly: bool = True  # each trial company's detection report for last week
    monthly: bool = True  # each trial company's report for last month, with the PDF
    seat_mail: bool = True  # the weekly seat report to the secretariat


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Addresses only this machine reaches: the console may speak plain HTTP only on these."""


class EntraConfig(_Strict):
    """Microsoft Entra sign-in to the console (MSAL's auth-code flow), beside local accounts.

    A person is given the console roles their token names: an app role (`roles` claim) or a
    group id (`groups` claim) listed in `roles`. A token naming none of them is refused.
    """

    # The console's own tenant, by its GUID: "common" or "organizations" would let any
    # tenant's administrator give themselves a console role in their own directory.
    tenant_id: str = Field(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
    client_id: str = Field(min_length=1, max_length=100)
    client_secret: SecretRef
    # The app role value or group object id -> console role (operator, secretariat, admin,
    # viewer).
    roles: dict[str, Literal["operator", "secretariat", "admin", "viewer"]] = Field(min_length=1)
    authority_host: str = "https://login.microsoftonline.com"

    @field_validator("authority_host")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// address")
        return value.rstrip("/")


class WebConfig(_Strict):
    """The console: where it listens, its address as people reach it, its session.

    It listens on loopback by default. Bound elsewhere it must sit behind TLS (a reverse
    proxy), given as an https `public_url`: its session cookie is then Secure.
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # The address a browser uses (https://console.example.jp), behind a TLS proxy; needed
    # for Entra sign-in's redirect. Empty: http://host:port.
    public_url: str = ""
    # The key that signs session cookies: a reference, or empty for a random key kept in
    # `key_file` (owner-only), made on first start.
    session_secret: SecretRef | None = None
    key_file: Path = Path("var/console-session.key")
    session_hours: int = Field(12, ge=1, le=24 * 14)
    idle_minutes: int = Field(120, ge=5, le=24 * 60)
    language: Literal["ja", "en"] = "ja"
    # Failed sign-ins allowed in `login_window_minutes`, per account and per address.
    login_failures_per_account: int = Field(5, ge=1)
    login_failures_per_address: int = Field(20, ge=1)
    login_window_minutes: int = Field(15, ge=1)
    queue_refresh_seconds: int = Field(10, ge=2, le=600)
    # The reverse proxies in front of the console (their addresses): a sign-in through one
    # of them is counted against the address it forwards (X-Forwarded-For), so one
    # guesser cannot lock out everyone behind the proxy.
    trusted_proxies: list[str] = Field(default_factory=list)
    entra: EntraConfig | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// address")
        return value

    @model_validator(mode="after")
    def _tls_outside_loopback(self) -> WebConfig:
        if self.host not in LOOPBACK_HOSTS and not self.public_url.startswith("https://"):
            raise ValueError(
                f"the console is bound to {self.host}, outside this machine: put it behind "
                "TLS and give its https:// address as public_url (passwords and session "
                "cookies never cross the network in plain HTTP)"
            )
        if self.public_url.startswith("http://"):
            host = self.public_url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)[0]
            if host.strip("[]") not in LOOPBACK_HOSTS:
                raise ValueError("public_url: plain http:// is for this machine only; use https://")
        return self

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies unless the console is reached on this machine in plain HTTP."""
        return self.public_url.startswith("https://")

    def base_url(self, port: int | None = None) -> str:
        """The console's address as a browser reaches it."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


class TrialConfig(_Strict):
    """A company's trial: fixed dates (`start`, `end`), or dates relative to the day the
    company is first brought into the store (`started_days_ago`, `days`).

    The relative form is for samples and drills: the sandbox's sample programme is then the
    same story whatever day it is seeded (one company mid-trial, one whose trial has ended,
    one that continues), and once seeded its dates stay, as a real trial's do.
    """

    start: date | None = None
    end: date | None = None
    started_days_ago: int | None = Field(None, ge=0)
    days: int | None = Field(None, ge=1)
    decision: Literal["undecided", "continue", "offboard"] = "undecided"

    @model_validator(mode="after")
    def _one_form(self) -> TrialConfig:
        fixed = (self.start, self.end)
        relative = (self.started_days_ago, self.days)
        if None not in fixed and relative == (None, None):
            assert self.start is not None and self.end is not None
            if self.end < self.start:
                raise ValueError(f"trial end {self.end} is before its start {self.start}")
            return self
        if None not in relative and fixed == (None, None):
            return self
        raise ValueError("give a trial either `start` and `end`, or `started_days_ago` and `days`")

    @property
    def relative(self) -> bool:
        """Dates counted from the day the company is seeded (then kept as stored)."""
        return self.start is None

    def dates(self, seeded: date) -> tuple[date, date]:
        """Its first and last day, for a company seeded on `seeded` (the JST date)."""
        if self.start is not None and self.end is not None:
            return self.start, self.end
        assert self.started_days_ago is not None and self.days is not None
        start = seeded - timedelta(days=self.started_days_ago)
        return start, start + timedelta(days=self.days - 1)


class ConnectionConfig(BaseModel):
    """The tenant connection; fields beyond `connector` are checked by that connector."""

    model_config = ConfigDict(extra="allow", frozen=True)
    connector: str


class AppRegistrationConfig(BaseModel):
    """The programme's one multi-tenant app registration, used for every consented tenant.

    The same block as a company's `connection` without `tenant_id`: the tenant is the
    company's, recorded in the store when its administrator consents. Its connector checks the
    other keys (a secret or certificate reference, never the secret itself).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    connector: str = "defender"

    def connection(self, tenant_id: str) -> dict[str, Any]:
        """The connector's settings for one consented tenant."""
        return self.model_dump() | {"tenant_id": tenant_id}


class CourseConfig(_Strict):
    """A support course companies apply for, and what it allows.

    `seat_cap` counts `seat_unit`: users for Defender for Business, devices for the CyCraft
    edition; planned seats above it are refused. A course with `refuses_existing_edr` is
    closed to a company already running an EDR (the programme's rule for the EDR course).
    """

    label_ja: str
    label_en: str
    connector: str = "defender"
    seat_cap: int = Field(300, ge=1)
    seat_unit: Literal["users", "devices"] = "users"
    refuses_existing_edr: bool = True
    trial_months: int = Field(3, ge=1, le=24)


class IndustryRow(_Strict):
    """One row of the SME Basic Act art. 2(1) table: an SME has capital **or** employees
    within it. `names` are the industries (as the application form spells them) in the row."""

    key: str = Field(pattern=r"^[a-z][a-z_]{1,30}$")
    label_ja: str
    label_en: str
    names: list[str] = Field(min_length=1)
    max_capital_yen: int = Field(ge=0)
    max_employees: int = Field(ge=0)


class Attestation(_Strict):
    """One of the declarations every applicant must make (ア〜キ in the call for applications)."""

    key: str = Field(pattern=r"^[a-z][a-z_]{1,40}$")
    ja: str
    en: str


def _default_industries() -> list[IndustryRow]:
    return [
        IndustryRow(
            key="manufacturing",
            label_ja="製造業、建設業、運輸業、その他の業種",
            label_en="manufacturing, construction, transport and other industries",
            names=["製造業", "建設業", "運輸業", "その他"],
            max_capital_yen=300_000_000,
            max_employees=300,
        ),
        IndustryRow(
            key="wholesale",
            label_ja="卸売業",
            label_en="wholesale",
            names=["卸売業"],
            max_capital_yen=100_000_000,
            max_employees=100,
        ),
        IndustryRow(
            key="services",
            label_ja="サービス業",
            label_en="services",
            names=["サービス業"],
            max_capital_yen=50_000_000,
            max_employees=100,
        ),
        IndustryRow(
            key="retail",
            label_ja="小売業",
            label_en="retail",
            names=["小売業"],
            max_capital_yen=50_000_000,
            max_employees=50,
        ),
    ]


def _default_attestations() -> list[Attestation]:
    return [
        Attestation(
            key="no_tax_arrears",
            ja="都税、消費税及び地方消費税の額に滞納がないこと",
            en="no arrears of Tokyo taxes, consumption tax or local consumption tax",
        ),
        Attestation(
            key="lawful",
            ja="法令等もしくは公序良俗に反し、またはその恐れがないこと",
            en="no breach, or risk of breach, of the law or public order",
        ),
        Attestation(
            key="no_tokyo_debt",
            ja="東京都に対する賃料・使用料等の債務の支払いが滞っていないこと",
            en="no overdue rent, fees or other debts to Tokyo",
        ),
        Attestation(
            key="not_insolvent",
            ja="民事再生法、会社更生法、破産法に基づく申立手続中又は私的整理手続中でないこと",
            en="not in civil rehabilitation, corporate reorganisation, bankruptcy or private "
            "restructuring proceedings",
        ),
        Attestation(
            key="no_antisocial",
            ja="暴力団関係者又は風俗関連業、ギャンブル業、賭博等の業態を営むものでないこと",
            en="not related to organised crime, nor in adult-entertainment or gambling trades",
        ),
        Attestation(
            key="no_mlm",
            ja="連鎖販売取引、ネガティブ・オプション、催眠商法、霊感商法などの業態を営むものでないこと",
            en="not in multi-level marketing, negative-option, hypnotic or spiritual sales",
        ),
        Attestation(
            key="not_religious_political",
            ja="宗教活動や政治活動を主たる目的とする団体等でないこと",
            en="not a body whose main purpose is religious or political activity",
        ),
    ]


def _default_courses() -> dict[str, CourseConfig]:
    return {"edr": CourseConfig(label_ja="EDR導入コース", label_en="EDR course")}


class EligibilityConfig(_Strict):
    """The programme's eligibility rules as data: where the main office must be, the SME
    table, the attestations. The rule engine (`programme/eligibility.py`) reads only this."""

    prefecture: str = "東京都"
    industries: list[IndustryRow] = Field(default_factory=_default_industries, min_length=1)
    attestations: list[Attestation] = Field(default_factory=_default_attestations)
    sole_proprietors: bool = True

    @model_validator(mode="after")
    def _names_once(self) -> EligibilityConfig:
        seen: dict[str, str] = {}
        for row in self.industries:
            for name in row.names:
                if name in seen:
                    raise ValueError(
                        f"industry {name!r} is in two rows ({seen[name]!r} and {row.key!r})"
                    )
                seen[name] = row.key
        return self


class ProgrammeConfig(_Strict):
    """The programme itself: its name, the app every tenant consents to, the courses and the
    rules. The companies, their applications and trials live in the store, not here."""

    name: str = "東京都中小企業サイバーセキュリティ基本対策事業"
    secretariat: str = "運営事務局"
    # The letterhead's second line under the secretariat's name (address, telephone).
    secretariat_contact: str = ""
    # Where the secretariat's own reports go (the weekly seat report); unset: desk.email.
    secretariat_email: EmailStr | None = None
    app: AppRegistrationConfig | None = None
    # Where the admin-consent page sends the administrator back (a page of the programme);
    # unset: Entra shows its own result and the secretariat records the tenant id by hand.
    consent_redirect_uri: str | None = None
    courses: dict[str, CourseConfig] = Field(default_factory=_default_courses, min_length=1)
    eligibility: EligibilityConfig = EligibilityConfig()
    call_business_days: int = Field(3, ge=1, le=30)  # the confirmation call is due within
    reminder_days: list[int] = Field(default_factory=lambda: [14, 7])  # before the trial's end
    unverified_days: int = Field(14, ge=1)  # a company or device unverified this long is listed
    retention_days: int = Field(90, ge=0)  # detailed data kept this long after offboarding

    @field_validator("reminder_days")
    @classmethod
    def _reminders(cls, value: list[int]) -> list[int]:
        if any(day < 1 for day in value):
            raise ValueError("reminders are whole days before the trial's end, at least 1")
        return sorted(set(value), reverse=True)

    @field_validator("consent_redirect_uri")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        return None if value is None else require_https(value)


class CompanyConfig(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    contact_name: str = ""
    contact_email: EmailStr
    language: Literal["ja", "en"] = "ja"
    planned_seats: int = Field(ge=0)
    seat_cap: int = Field(300, ge=1)
    auto_isolation: bool = False  # the company agreed to isolation without being asked first
    trial: TrialConfig
    connection: ConnectionConfig


def _keys_once(value: list[CompanyConfig]) -> list[CompanyConfig]:
    # One tenant per company is checked once each connector has put its tenant id in its
    # one spelling (`_checked_companies`).
    seen: set[str] = set()
    for company in value:
        if company.key in seen:
            raise ValueError(f"company key {company.key!r} appears twice")
        seen.add(company.key)
    return value


class Settings(_Strict):
    """The whole validated configuration."""

    database: DatabaseConfig = DatabaseConfig()
    sandbox: SandboxConfig = SandboxConfig()
    mail: MailConfig
    desk: DeskConfig
    calendar: CalendarConfig = CalendarConfig()
    sla: SlaConfig = SlaConfig()
    schedules: SchedulesConfig = SchedulesConfig()
    reports: ReportsConfig = ReportsConfig()
    web: WebConfig = WebConfig()
    logging: LoggingConfig = LoggingConfig()
    playbooks: list[Path] = Field(default_factory=list)
    programme: ProgrammeConfig = ProgrammeConfig()
    # Companies live in the store; blocks here are read only by `companies import-config`
    # (the service warns that they are ignored).
    companies: list[CompanyConfig] = Field(default_factory=list)

    @field_validator("companies")
    @classmethod
    def _unique_keys(cls, value: list[CompanyConfig]) -> list[CompanyConfig]:
        return _keys_once(value)


class Config:
    """Settings plus where they came from, so relative paths resolve beside the file."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.base_dir = path.parent

    def resolve(self, value: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        return value if value.is_absolute() else self.base_dir / value

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path anchored beside the config file."""
        url = self.settings.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(Path(url[len(prefix) :])))
        return url


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(path: Path, err: ValidationError, prefix: str = "") -> list[str]:
    lines = [f"{path}: invalid configuration"]
    for item in err.errors():
        where = _location(tuple(item["loc"]))
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {where}: {message}")
    return lines


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: {what} not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def load_config(path: Path) -> Config:
    """Read and validate a config file, including each connector's own connection block."""
    raw = _read_toml(path, "config file")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError.listing(_describe(path, err)) from err

    companies = _checked_companies(path, settings.companies)
    if settings.programme.app is not None:
        _checked_app(path, settings.programme.app)
    return Config(settings.model_copy(update={"companies": companies}), path)


class _CompaniesFile(BaseModel):
    """The `[[companies]]` blocks of a file; whatever else it holds is not read here."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    companies: list[CompanyConfig] = Field(default_factory=list)

    @field_validator("companies")
    @classmethod
    def _unique_keys(cls, value: list[CompanyConfig]) -> list[CompanyConfig]:
        return _keys_once(value)


def load_companies(path: Path) -> list[CompanyConfig]:
    """The `[[companies]]` blocks of a file (a whole config file, or one holding only those
    blocks), validated as `load_config` validates them: each connection block by its
    connector, each tenant id in its one spelling, one tenant per company."""
    raw = _read_toml(path, "file")
    try:
        parsed = _CompaniesFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError.listing(_describe(path, err)) from err
    return _checked_companies(path, parsed.companies)


def _checked_companies(path: Path, companies: list[CompanyConfig]) -> list[CompanyConfig]:
    checked = [_checked_connection(path, index, c) for index, c in enumerate(companies)]
    _one_company_per_tenant(path, checked)
    return checked


#: Stands for a consented tenant while the app block is checked on its own.
_ANY_TENANT = "00000000-0000-0000-0000-000000000000"


def _checked_app(path: Path, app: AppRegistrationConfig) -> None:
    """Let the app's connector check its block as it will for each consented tenant."""
    from edrtrial.connectors import connector_class

    where = "programme.app"
    try:
        cls = connector_class(app.connector)
    except ConfigError as err:
        raise ConfigError(f"{path}: {where}.connector: {err}") from err
    if "tenant_id" in app.model_dump():
        raise ConfigError(
            f"{path}: {where}.tenant_id: the app serves every consented tenant; each company's "
            "tenant id is recorded in the store (`edrtrial tenants consented`)"
        )
    try:
        cls.settings_model.model_validate(app.connection(_ANY_TENANT))
    except ValidationError as err:
        raise ConfigError.listing(_describe(path, err, where)) from err


def _checked_connection(path: Path, index: int, company: CompanyConfig) -> CompanyConfig:
    """The company with its connection block validated by its connector, and its tenant id
    in the connector's one spelling (a Defender GUID in lower case, whatever was typed)."""
    from edrtrial.connectors import connector_class  # connectors validate their own block

    where = f"companies[{index}].connection"
    try:
        cls = connector_class(company.connection.connector)
    except ConfigError as err:
        raise ConfigError(f"{path}: {where}.connector: {err}") from err
    block = company.connection.model_dump()
    try:
        parsed = cls.settings_model.model_validate(block)
    except ValidationError as err:
        raise ConfigError.listing(_describe(path, err, where)) from err
    tenant = getattr(parsed, "tenant_id", None)
    if not isinstance(tenant, str) or tenant == block.get("tenant_id"):
        return company
    connection = ConnectionConfig.model_validate(block | {"tenant_id": tenant})
    return company.model_copy(update={"connection": connection})


def _one_company_per_tenant(path: Path, companies: list[CompanyConfig]) -> None:
    """Refuse one tenant under two companies: each would ingest the other's alerts and mail
    its PC names to the other's contact."""
    held: dict[tuple[str, str], tuple[int, str]] = {}
    for index, company in enumerate(companies):
        tenant = company.connection.model_dump().get("tenant_id")
        if not isinstance(tenant, str) or not tenant:
            continue
        first = held.setdefault((company.connection.connector, tenant), (index, company.key))
        if first[0] != index:
            raise ConfigError(
                f"{path}: companies[{index}].connection.tenant_id: tenant {tenant} is configured "
                f"for two companies, {first[1]!r} (companies[{first[0]}]) and {company.key!r}"
            )


def default_config_path() -> Path:
    """$EDRTRIAL_CONFIG, else ./config.toml, else the shipped ./config.example.toml."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for name in ("config.toml", "config.example.toml"):
        if Path(name).exists():
            return Path(name)
    return Path("config.toml")
