"""The store's tables: typed SQLAlchemy 2 models, the only place state lives."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from edrtrial.timeutil import Stamp, as_utc, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = as_utc(value)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class StampType(TypeDecorator[Stamp]):
    """A `Stamp` as its 100-ns ticks since 1970: a datetime column would cut the 7th digit."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Stamp | None, dialect: Dialect) -> int | None:
        return None if value is None else value.ticks

    def process_result_value(self, value: int | None, dialect: Dialect) -> Stamp | None:
        return None if value is None else Stamp(value)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, Stamp: StampType, dict[str, Any]: JSONType}


class Cohort(Base):
    """A cohort of the programme: one course, a capacity, places first come first served."""

    __tablename__ = "cohort"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    course: Mapped[str] = mapped_column(String(32))  # a key of the config's programme.courses
    capacity: Mapped[int] = mapped_column(Integer)
    # None: the course's trial_months.
    trial_months: Mapped[int | None] = mapped_column(Integer)
    # A closed cohort takes no new company (the waiting list still moves up into it).
    closed: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Company(Base):
    """A company of the programme, from its application to the purge of its data.

    `state` is its journey (`JourneyState`; the table: `programme/journey.py`). Identity is
    the 法人番号 (`corporate_number`) when it has one; a sole proprietor has none and is known
    by its normalised name, address and representative (`identity_key`).
    """

    __tablename__ = "company"
    # Unique indexes, not constraints: an existing store gains them without a table rebuild.
    __table_args__ = (
        Index("ix_company_corporate_number", "corporate_number", unique=True),
        Index("ix_company_anon_code", "anon_code", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(8), default="ja")
    planned_seats: Mapped[int] = mapped_column(Integer, default=0)
    seat_cap: Mapped[int] = mapped_column(Integer, default=300)
    # The company agreed that a playbook may isolate its devices without asking first.
    auto_isolation: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    state: Mapped[str] = mapped_column(String(24), default="applied", server_default="applied")
    state_since: Mapped[datetime | None]
    state_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    kind: Mapped[str] = mapped_column(
        String(16), default="corporation", server_default="corporation"
    )  # "corporation" | "sole_proprietor"
    corporate_number: Mapped[str | None] = mapped_column(String(13))
    identity_key: Mapped[str] = mapped_column(
        String(400), default="", server_default="", index=True
    )
    representative: Mapped[str] = mapped_column(String(200), default="", server_default="")
    address: Mapped[str] = mapped_column(Text, default="", server_default="")
    prefecture: Mapped[str] = mapped_column(String(8), default="", server_default="")
    industry: Mapped[str] = mapped_column(String(64), default="", server_default="")
    capital_yen: Mapped[int | None] = mapped_column(BigInteger)
    employees: Mapped[int | None] = mapped_column(Integer)
    contact_phone: Mapped[str] = mapped_column(String(40), default="", server_default="")
    course: Mapped[str] = mapped_column(String(32), default="edr", server_default="edr")
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohort.id"), index=True)
    # First come, first served: when the call completed the application (its place in the
    # queue), and when it took the place it holds in `cohort_id` (None: it holds none).
    queued_at: Mapped[datetime | None]
    place_since: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    # The code its anonymous aggregates keep once its details are purged.
    anon_code: Mapped[str | None] = mapped_column(String(16))
    purged_at: Mapped[datetime | None]

    tenant: Mapped[Tenant | None] = relationship(back_populates="company", uselist=False)
    trial: Mapped[Trial | None] = relationship(back_populates="company", uselist=False)
    cohort: Mapped[Cohort | None] = relationship()


class Application(Base):
    """One application as received (web form export or CLI), with the raw input kept.

    Importing the same row twice changes nothing (`fingerprint`); a second application of a
    company already in the store is kept, marked as the repeat it is (`repeat_of`), and
    starts no second journey.
    """

    __tablename__ = "application"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(Text, default="")  # "applications.csv line 12", "cli"
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)  # column → value, as received
    repeat_of: Mapped[int | None] = mapped_column(ForeignKey("application.id"))
    course: Mapped[str] = mapped_column(String(32), default="edr")
    planned_seats: Mapped[int] = mapped_column(Integer, default=0)
    existing_edr: Mapped[bool] = mapped_column(default=False, server_default=false())
    existing_edr_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    prior_support: Mapped[bool] = mapped_column(default=False, server_default=false())
    tokyo_subsidy: Mapped[bool] = mapped_column(default=False, server_default=false())
    attestations: Mapped[list[str]] = mapped_column(JSONType, default=list)  # keys attested
    eligibility: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # [{"code": …, "ja": …, "en": …}], each reason the rules gave.
    eligibility_reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    decided_at: Mapped[datetime | None]
    call_due_on: Mapped[date | None] = mapped_column(Date)
    call_done_at: Mapped[datetime | None]
    call_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    call_notes: Mapped[str] = mapped_column(Text, default="", server_default="")


class PreDiagnosis(Base):
    """The expert's pre-diagnosis (事前診断) of a company's security environment."""

    __tablename__ = "pre_diagnosis"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), unique=True)
    done_at: Mapped[datetime]
    done_by: Mapped[str] = mapped_column(String(200))
    network_notes: Mapped[str] = mapped_column(Text, default="")
    free_hub_ports: Mapped[int | None] = mapped_column(Integer)
    existing_utm: Mapped[bool] = mapped_column(default=False)
    existing_edr: Mapped[bool] = mapped_column(default=False)
    existing_edr_name: Mapped[str] = mapped_column(String(200), default="")
    existing_antivirus: Mapped[str] = mapped_column(String(200), default="")
    edr_users: Mapped[int] = mapped_column(Integer, default=0)
    utm_devices: Mapped[int] = mapped_column(Integer, default=0)
    # "none" | "partial" | "documented" | "published" (published: SECURITY ACTION ★★ ready)
    security_policy: Mapped[str] = mapped_column(String(16), default="none")
    notes: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16), default="passed")  # "passed" | "refused"
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)


class PredecessorRecord(Base):
    """A company supported before by a predecessor programme (an imported list)."""

    __tablename__ = "predecessor_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    corporate_number: Mapped[str | None] = mapped_column(String(13), index=True)
    identity_key: Mapped[str] = mapped_column(String(400), default="", index=True)
    name: Mapped[str] = mapped_column(String(200))
    programme: Mapped[str] = mapped_column(String(200), default="")
    year: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)


class CompanyAggregate(Base):
    """What stays of a company's month once its details are purged: figures under its
    anonymous code, for the cohort results report. Nothing here names the company."""

    __tablename__ = "company_aggregate"
    __table_args__ = (UniqueConstraint("anon_code", "month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    anon_code: Mapped[str] = mapped_column(String(16), index=True)
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohort.id"), index=True)
    month: Mapped[date] = mapped_column(Date)  # the month's first day
    industry_row: Mapped[str] = mapped_column(String(32), default="")
    # {"category": {"severity": count}}
    detections: Mapped[dict[str, Any]] = mapped_column(default=dict)
    incidents: Mapped[int] = mapped_column(Integer, default=0)
    ack_minutes: Mapped[list[float]] = mapped_column(JSONType, default=list)
    resolve_minutes: Mapped[list[float]] = mapped_column(JSONType, default=list)
    devices_onboarded: Mapped[int] = mapped_column(Integer, default=0)
    devices_active: Mapped[int] = mapped_column(Integer, default=0)
    decision: Mapped[str] = mapped_column(String(16), default="")
    pre_diagnosis: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tenant(Base):
    """A company's EDR tenant and how to reach it (secrets only as references)."""

    __tablename__ = "tenant"
    __table_args__ = (UniqueConstraint("connector", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), unique=True)
    connector: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_reason: Mapped[str] = mapped_column(Text, default="")
    last_poll_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    # Circuit breaker: consecutive transient failures, and no poll before this time.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None]
    # When the tenant entered its state: how long it has been failing or parked.
    state_since: Mapped[datetime | None]
    # When its first complete poll (ingest and triage of everything it brought) committed;
    # until then its backlog is summarised, not announced alert by alert (`desk/first_poll.py`).
    first_poll_done_at: Mapped[datetime | None]
    # Settings of its own connection beside the programme's app (a CyCraft edition's key):
    # the connector's block without secrets, which stay references ("env:…", "file:…").
    # Empty: the programme's app registration, with `external_id` as its tenant.
    connection: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    consented_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    # After offboarding nothing may reach the tenant any more: its connection is forgotten.
    credentials_dropped_at: Mapped[datetime | None]

    company: Mapped[Company] = relationship(back_populates="tenant")


class Trial(Base):
    """The company's trial period and its continue-or-offboard decision."""

    __tablename__ = "trial"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), unique=True)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    decision: Mapped[str] = mapped_column(String(16), default="undecided")
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str] = mapped_column(String(200), default="", server_default="")

    company: Mapped[Company] = relationship(back_populates="trial")


class Device(Base):
    """A device as the EDR inventory reports it."""

    __tablename__ = "device"
    __table_args__ = (UniqueConstraint("tenant_id", "source_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    source_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255), default="")
    os_platform: Mapped[str] = mapped_column(String(64), default="")
    os_version: Mapped[str] = mapped_column(String(64), default="")
    health_status: Mapped[str] = mapped_column(String(64), default="")
    onboarding_status: Mapped[str] = mapped_column(String(64), default="")
    risk_score: Mapped[str] = mapped_column(String(32), default="")
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    # last_seen to the 100 ns: an inventory older than the stored one is not applied.
    last_seen_stamp: Mapped[Stamp | None]
    in_inventory: Mapped[bool] = mapped_column(default=False)
    detection_test_at: Mapped[datetime | None]
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default="[]")
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Incident(Base):
    """An EDR incident (a group of alerts) as the source reports it."""

    __tablename__ = "incident"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "source_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime | None]
    last_update_at: Mapped[datetime | None]
    # last_update_at to the 100 ns, as the EDR stamped it: "newer" is decided on this.
    last_update_stamp: Mapped[Stamp | None]
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Ticket(Base):
    """A desk ticket: one per incident, or per device and technique within a window.

    `correlation_base` is what groups alerts (e.g. `incident:123`); `correlation_key` is
    unique per tenant and carries `#2`, `#3`… when a closed group needs a new ticket.
    """

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint("tenant_id", "correlation_key"),
        # The desk's queue reads the open tickets of 100,000 (most closed) by state.
        Index("ix_ticket_state_priority", "state", "priority"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    correlation_key: Mapped[str] = mapped_column(String(200))
    correlation_base: Mapped[str] = mapped_column(String(200), default="", index=True)
    title: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(16), default="new")
    assignee: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_alert_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # Escalation: the channel that was told last, how many steps up, and the deadline.
    channel: Mapped[str] = mapped_column(String(64), default="", server_default="")
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ack_due_at: Mapped[datetime | None] = mapped_column(index=True)
    reopened: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The programme's incident record, required to resolve: when, what, cause, handling, effect.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    classification: Mapped[str] = mapped_column(String(64), default="", server_default="")
    determination: Mapped[str] = mapped_column(String(64), default="", server_default="")

    alerts: Mapped[list[Alert]] = relationship(back_populates="ticket")


class TicketNote(Base):
    """An operator's note on a ticket (never edited; a correction is a new note)."""

    __tablename__ = "ticket_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)


class Alert(Base):
    """A normalised EDR alert; `raw` keeps the payload exactly as received."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "source_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    incident_source_id: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(32), default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    detection_source: Mapped[str] = mapped_column(String(64), default="")
    service_source: Mapped[str] = mapped_column(String(64), default="")
    mitre_techniques: Mapped[list[str]] = mapped_column(JSONType, default=list)
    device_source_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    device_names: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Normalised evidence: {"users": [...], "file_hashes": [...], "ips": [...], "urls": [...],
    # "command_lines": [...]}.
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime | None] = mapped_column(index=True)
    last_update_at: Mapped[datetime | None]
    # last_update_at to the 100 ns, as the EDR stamped it: "newer" is decided on this.
    last_update_stamp: Mapped[Stamp | None]
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    triaged_at: Mapped[datetime | None]
    priority: Mapped[str | None] = mapped_column(String(4))
    suppressed_reason: Mapped[str | None] = mapped_column(String(64))
    matched_rules: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The verdict (from a playbook or the desk) and whether it still has to reach the EDR:
    # write_back is a `WriteBackState` ("" nothing to send, "pending", "done", "off",
    # "failed", "overtaken"); write_back_error is why the last attempt failed.
    classification: Mapped[str] = mapped_column(String(64), default="", server_default="")
    determination: Mapped[str] = mapped_column(String(64), default="", server_default="")
    write_back: Mapped[str] = mapped_column(Text, default="", server_default="")
    write_back_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)

    ticket: Mapped[Ticket | None] = relationship(back_populates="alerts")


class QuarantinedRecord(Base):
    """A record the connector could not map: kept with its reason for an operator to look at."""

    __tablename__ = "quarantined_record"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "kind", "source_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    times_seen: Mapped[int] = mapped_column(Integer, default=1)


class ResponseAction(Base):
    """An action on a device (isolate, release, offboard…), taken at most once per dedupe key."""

    __tablename__ = "response_action"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="planned")
    reason: Mapped[str] = mapped_column(Text, default="")
    source_action_id: Mapped[str | None] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]  # claimed for sending: the EDR's action is no older
    finished_at: Mapped[datetime | None]  # a terminal status was recorded

    device: Mapped[Device] = relationship()


class PollCursor(Base):
    """How far a tenant's stream has been ingested; moved in the same transaction as its rows."""

    __tablename__ = "poll_cursor"
    __table_args__ = (UniqueConstraint("tenant_id", "stream"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    stream: Mapped[str] = mapped_column(String(32))
    position: Mapped[datetime | None]
    # The position to the 100 ns, as the EDR stamped the newest record it covers.
    position_stamp: Mapped[Stamp | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxMessage(Base):
    """A mail waiting to go out; the dedupe key makes each notice exist once."""

    __tablename__ = "outbox_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    # How it travels: "mail" (recipient is an address) or a configured channel's transport
    # ("teams", "webhook"; recipient is the channel's name, its URL stays in the config).
    channel: Mapped[str] = mapped_column(String(16), default="mail", server_default="mail")
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # The archived report this mail carries as its attachment (a PDF, a CSV).
    report_id: Mapped[int | None] = mapped_column(ForeignKey("report_archive.id"), index=True)
    report: Mapped[ReportArchive | None] = relationship()


class ReportArchive(Base):
    """A report as it was sent: the file attached to the mail, and to whom and when.

    Written once, before its mail is queued; the file is the one the mail attaches, so what
    a company received can be shown and re-sent as it was. `sequence` counts the sends of
    one report (0 the first; a deliberate re-send is 1, 2...), and `dedupe_key` (kind,
    company, period, sequence) keeps a second first send from existing.
    """

    __tablename__ = "report_archive"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    # "weekly", "monthly", "incident", "seats" (the secretariat's)...
    kind: Mapped[str] = mapped_column(String(32), index=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(8), default="ja")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # Where the file is (as written, under reports.archive_dir), its name in the mail, its type.
    path: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[list[str]] = mapped_column(JSONType, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what, when, to which tenant: written for every operator or destructive action."""

    __tablename__ = "audit_event"
    # A ticket's history is read by its target (`ticket:42`).
    __table_args__ = (Index("ix_audit_event_target", "target"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    # Whom a person acted for (`ticket --by NAME`); the actor stays who ran the command.
    on_behalf_of: Mapped[str] = mapped_column(String(200), default="", server_default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServiceLock(Base):
    """A named lease (the scheduler's) so only one process owns the store's schedule."""

    __tablename__ = "service_lock"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRun(Base):
    """A scheduled job's last success and last failure (per company for a company's job), so
    an operator sees whether the service works, not only whether its process is up."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "company_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    company_key: Mapped[str] = mapped_column(String(64), default="", server_default="")
    last_success_at: Mapped[datetime | None]
    last_success_seconds: Mapped[float | None] = mapped_column(Float)
    last_success_summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    last_failure_at: Mapped[datetime | None]
    last_failure_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Consecutive failures, and when the first of them happened (cleared by a success).
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None]


class DeskAlarm(Base):
    """A problem the desk has been told about (a parked tenant, a failing job) until it is
    told of the recovery: kept in the store so a restart neither repeats nor forgets it."""

    __tablename__ = "desk_alarm"
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    problem: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"))
    since: Mapped[datetime]
    told_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")


class ConsoleUser(Base):
    """A person who signs in to the web console: a local account (argon2 hash) or one made
    at their first Microsoft Entra sign-in (`entra_object_id`, no password).

    `roles` lists their console roles (`edrtrial.access.roles`); `cohorts` the cohorts they
    are limited to (none: every cohort). `epoch` grows on every change that must end their
    sessions (a new password, disabling, new roles or cohorts): a session carries the epoch
    it began under and is refused once it differs.
    """

    __tablename__ = "console_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)  # NFKC, lower case
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    entra_object_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    epoch: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]

    cohorts: Mapped[list[Cohort]] = relationship(
        secondary="console_user_cohort", order_by="Cohort.key"
    )


class ConsoleUserCohort(Base):
    """A cohort a console user is limited to."""

    __tablename__ = "console_user_cohort"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_user.id", ondelete="CASCADE"), primary_key=True
    )
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohort.id"), primary_key=True)


class LoginAttempt(Base):
    """A sign-in to the console, kept to limit guessing per account and per address."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_username_at", "username", "at"),
        Index("ix_login_attempt_address_at", "address", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    succeeded: Mapped[bool] = mapped_column(default=False)
