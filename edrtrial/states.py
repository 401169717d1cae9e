"""The states each entity can be in, as enums.

They live with the platform because the store's columns hold them and every layer reads
them (a report says "対応中" only for a ticket someone is working on). Which state may follow
which is each domain's own business: the transition tables are `desk/states.py` (tickets),
`devices/states.py` (device actions, offboarding tasks), `ingest/states.py` (tenant
polling) and `notify/states.py` (outbox messages), built with `edrtrial.machine`.
"""

from __future__ import annotations

from enum import StrEnum


class TicketState(StrEnum):
    """Where a desk ticket stands."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def open(self) -> bool:
        """Still the desk's work (not resolved or closed)."""
        return self in OPEN_TICKET_STATES


OPEN_TICKET_STATES = (TicketState.NEW, TicketState.ACKNOWLEDGED, TicketState.IN_PROGRESS)


class Priority(StrEnum):
    """A ticket's priority; P1 is the most urgent."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 for P1 … 4 for P4: lower is more urgent."""
        return int(self.value[1:])


class ActionState(StrEnum):
    """Where a device action stands: isolate, release (device actions) or offboard (tasks).

    One column holds both entities' states. Ours come first; the EDR's own six follow
    (`connectors.base.ActionStatus`, the same values), so what the EDR answers is stored as is.
    """

    PROPOSED = "proposed"  # a playbook's suggestion; nothing happens until an operator acts
    PLANNED = "planned"  # to be sent
    SENDING = "sending"  # claimed and being sent; stays if the process dies mid-send
    UNCONFIRMED = "unconfirmed"  # sent, no answer: the EDR's action is looked for until found
    SUPERSEDED = "superseded"  # a proposal made moot by a planned isolation of its device
    MANUAL = "manual"  # offboarding the EDR cannot do remotely: handed over to a person
    PENDING = "pending"
    IN_PROGRESS = "inprogress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # Offboarding after the EDR's success: the device went quiet, or still reports days later.
    VERIFIED = "verified"
    STILL_REPORTING = "still_reporting"


class TenantState(StrEnum):
    """Whether a tenant is polled: active, failing (backing off) or parked (operator's turn)."""

    ACTIVE = "active"
    FAILING = "failing"
    PARKED = "parked"


class OutboxState(StrEnum):
    """An outbox message: waiting (or being retried), delivered, or given up."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class WriteBackState(StrEnum):
    """Whether an alert's verdict still has to reach the EDR (the reason of a failure is apart)."""

    NONE = ""  # nothing to send
    PENDING = "pending"
    DONE = "done"
    OFF = "off"  # the tenant's write-back switch is off: not sent, and never will be
    FAILED = "failed"  # refused by the EDR; `Alert.write_back_error` says why
    # Accepted by the EDR after a re-triage had withdrawn the verdict (the alert is no longer
    # what it said): triage's next pass tells the desk to reopen it there, then it is "done".
    OVERTAKEN = "overtaken"


class JourneyState(StrEnum):
    """Where a company stands in the programme, from its application to the purge of its data.

    The transition table is `programme/journey.py`. A company that withdraws once its devices
    run the EDR goes to `offboarding` like one that does not continue (`Company.withdrawn_at`
    says why); before that it ends in `withdrawn`.
    """

    APPLIED = "applied"  # the application is in; eligibility not decided yet
    ELIGIBLE = "eligible"
    NEEDS_REVIEW = "needs_review"  # the rules cannot decide alone: the secretariat decides
    NOT_ELIGIBLE = "not_eligible"
    CALL_CONFIRMED = "call_confirmed"  # the call completed the application; a place is held
    WAITING_LIST = "waiting_list"  # complete, but the cohort was full when the call came
    PRE_DIAGNOSED = "pre_diagnosed"  # passing: admission follows in the same step
    ADMITTED = "admitted"  # its place in the cohort is confirmed
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    CONSENTED = "consented"  # its administrator consented to the programme's app
    TENANT_VERIFIED = "tenant_verified"  # every API the service needs answered
    IN_TRIAL = "in_trial"
    ENDING = "ending"  # the trial ends within the first reminder's days
    CONTINUING = "continuing"  # the trial ended; the company contracts with the vendor
    OFFBOARDING = "offboarding"  # the trial ended (or it withdrew): its devices are uninstalled
    OFFBOARDED = "offboarded"  # every device verified as no longer reporting
    PURGED = "purged"  # detailed data purged after retention; anonymous aggregates remain

    @property
    def ja(self) -> str:
        """The secretariat's word for the state."""
        return JOURNEY_JA[self]


JOURNEY_JA: dict[JourneyState, str] = {
    JourneyState.APPLIED: "申込受付",
    JourneyState.ELIGIBLE: "要件確認済",
    JourneyState.NEEDS_REVIEW: "要確認",
    JourneyState.NOT_ELIGIBLE: "対象外",
    JourneyState.CALL_CONFIRMED: "申込完了(電話確認済)",
    JourneyState.WAITING_LIST: "キャンセル待ち",
    JourneyState.PRE_DIAGNOSED: "事前診断済",
    JourneyState.ADMITTED: "参加確定",
    JourneyState.REFUSED: "不採択",
    JourneyState.WITHDRAWN: "辞退",
    JourneyState.CONSENTED: "同意済",
    JourneyState.TENANT_VERIFIED: "接続確認済",
    JourneyState.IN_TRIAL: "体験中",
    JourneyState.ENDING: "終了間近",
    JourneyState.CONTINUING: "継続利用",
    JourneyState.OFFBOARDING: "アンインストール中",
    JourneyState.OFFBOARDED: "アンインストール完了",
    JourneyState.PURGED: "データ削除済",
}

#: Tenants of companies in these states are polled (alerts, inventory, offboarding checks).
POLLED_JOURNEY = (
    JourneyState.TENANT_VERIFIED,
    JourneyState.IN_TRIAL,
    JourneyState.ENDING,
    JourneyState.CONTINUING,
    JourneyState.OFFBOARDING,
)
