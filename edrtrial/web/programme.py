"""The secretariat's pages: the applications by journey state, and each company's journey
with the steps its state allows.

Every page reads through the programme's queries with the person's `Scope` (a company
outside it is "not found"); every step calls the service the CLI calls, as the person, and
comes back to the company's page with what happened. A step the programme refuses (the
company moved meanwhile, a rule says no) is a message on that page, never an error page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access.accounts import Person
from edrtrial.access.roles import Permission
from edrtrial.db import transaction
from edrtrial.errors import EdrTrialError
from edrtrial.models import Company
from edrtrial.notify.archive import archive_listing
from edrtrial.programme import cohort_view, journey_view, seats
from edrtrial.programme.admission import POLICIES, Diagnosis, Outcome
from edrtrial.programme.applicants import review
from edrtrial.programme.companies import company_by_key
from edrtrial.programme.eligibility import Verdict
from edrtrial.programme.trial_steps import start_trial
from edrtrial.service import admission
from edrtrial.service.consent import issue_consent_link, record_consented
from edrtrial.service.runtime import Runtime
from edrtrial.service.trial_lifecycle import decide, uninstalled_by_hand
from edrtrial.service.verification import verify_tenant
from edrtrial.states import JourneyState as J
from edrtrial.timeutil import jst_date
from edrtrial.untrusted import one_line
from edrtrial.web.i18n import N_, _, say
from edrtrial.web.security import action, flash, need, signed_in
from edrtrial.web.templating import render

log = logging.getLogger(__name__)

BEFORE_ADMISSION = (
    J.APPLIED,
    J.ELIGIBLE,
    J.NEEDS_REVIEW,
    J.NOT_ELIGIBLE,
    J.CALL_CONFIRMED,
    J.WAITING_LIST,
    J.PRE_DIAGNOSED,
)
WITHDRAWABLE = (*BEFORE_ADMISSION, J.ADMITTED, J.CONSENTED, J.TENANT_VERIFIED, J.IN_TRIAL, J.ENDING)
DECIDABLE = (J.IN_TRIAL, J.ENDING, J.CONTINUING, J.OFFBOARDING)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _today(runtime: Runtime) -> date:
    return jst_date(runtime.clock())


def state_label(state: J) -> str:
    """The secretariat's word for the state (Japanese), or its name in English."""
    from edrtrial.web import i18n

    return state.ja if i18n.language() == "ja" else state.value.replace("_", " ")


def state_word(value: str) -> str:
    """`state_label` of a state stored as text (an unknown one: as it is stored)."""
    try:
        return state_label(J(value))
    except ValueError:
        return value


HISTORY_WORDS = {
    "application.received": N_("application received"),
    "company.imported": N_("imported from the config"),
    "company.judge_eligible": N_("judged eligible"),
    "company.judge_review": N_("set aside for review"),
    "company.judge_not_eligible": N_("judged not eligible"),
    "company.call": N_("confirmation call recorded"),
    "company.queue": N_("put on the waiting list"),
    "company.diagnose": N_("pre-diagnosis recorded"),
    "company.admit": N_("admitted to its cohort"),
    "company.move_up": N_("moved up from the waiting list"),
    "company.refuse": N_("refused"),
    "company.withdraw": N_("withdrawn"),
    "company.withdraw_connected": N_("withdrawn after connecting (its devices to uninstall)"),
    "company.consent_url": N_("consent URL issued"),
    "company.consent": N_("consent recorded"),
    "company.consent_confirmed": N_("consent confirmed"),
    "company.consent_corrected": N_("consent corrected"),
    "company.verify": N_("tenant verified"),
    "company.verify_failed": N_("tenant verification failed"),
    "company.reverified": N_("tenant verified again"),
    "company.start": N_("trial started"),
    "company.near_end": N_("trial nearing its end"),
    "company.extend": N_("trial extended"),
    "trial.reminded": N_("reminder of the trial's end sent"),
    "trial.decided": N_("the company's decision recorded"),
    "company.continue": N_("continues with the product"),
    "company.offboard": N_("does not continue (its devices to uninstall)"),
    "company.offboarded": N_("every device uninstalled"),
    "company.purge": N_("detailed data purged"),
    "report.queued": N_("report queued for mailing"),
    "tenant.resumed": N_("tenant's polling resumed"),
}
"""What each audited action on a company is called in its history (an action not listed
here is shown by its stored name)."""


def history_word(action: str) -> str:
    """The history's word for an audited action on a company."""
    word = HISTORY_WORDS.get(action)
    return _(word) if word else action


DECISION_WORDS = {
    "continue": N_("continues"),
    "offboard": N_("does not continue"),
    "undecided": N_("undecided"),
}


def decision_label(decision: str) -> str:
    """The company's answer at its trial's end, in the request's language."""
    return _(DECISION_WORDS[decision]) if decision in DECISION_WORDS else decision


DUE_WORDS = {
    "the eligibility decision": N_("the eligibility decision"),
    "the pre-diagnosis (事前診断)": N_("the pre-diagnosis"),
    "admission to its cohort": N_("admission to its cohort"),
    "the consent URL to send to its administrator": N_(
        "the consent URL to send to its administrator"
    ),
    "the tenant's verification": N_("the tenant's verification"),
    "nothing: the company contracts with the vendor directly": N_(
        "nothing: the company contracts with the vendor directly"
    ),
    "offboarding: every device uninstalled and verified": N_(
        "offboarding: every device uninstalled and verified"
    ),
    "nothing: only its anonymous figures remain": N_("nothing: only its anonymous figures remain"),
    "the confirmation call": N_("the confirmation call"),
    "a review of its eligibility, then the confirmation call": N_(
        "a review of its eligibility, then the confirmation call"
    ),
    "the pre-diagnosis (may be done while waiting)": N_(
        "the pre-diagnosis (may be done while waiting)"
    ),
    "the trial's start to record": N_("the trial's start to record"),
    "the trial's start": N_("the trial's start"),
    "the trial's dates to record": N_("the trial's dates to record"),
    "the company's decision (continue or offboard)": N_(
        "the company's decision (continue or offboard)"
    ),
    "the purge of its detailed data": N_("the purge of its detailed data"),
}
_CONSENT_SENT = re.compile(r"its administrator's consent \(the link went out (\S+)\)")
_WAITING = re.compile(r"a free place: position (\d+) of (\d+) on the waiting list")
_REMINDER = re.compile(r"the reminder mail \(T-(\d+)\)")
_TRIAL_END = re.compile(r"the trial's end \((\w+)\)")


def due_label(what: str) -> str:
    """What is due next (`journey_view.Due.what`), in the request's language."""
    if what in DUE_WORDS:
        return _(DUE_WORDS[what])
    if found := _CONSENT_SENT.fullmatch(what):
        return _("its administrator's consent (the link went out %(day)s)", day=found[1])
    if found := _WAITING.fullmatch(what):
        return _("a free place: position %(n)s of %(total)s", n=found[1], total=found[2])
    if found := _REMINDER.fullmatch(what):
        return _("the reminder mail (%(days)s days before the end)", days=found[1])
    if found := _TRIAL_END.fullmatch(what):
        return _("the trial's end (%(decision)s)", decision=decision_label(found[1]))
    return what


def _visible(session: Session, person: Person, key: str) -> Company:
    """The company `key` if the person sees it; else the page is not found."""
    company = company_by_key(session, key)
    if company is None or not person.scope.sees_company(session, company.id):
        raise HTTPException(404)
    return company


def allowed_steps(state: J, person: Person, has_diagnosis: bool) -> frozenset[str]:
    """The forms the company's page offers: those its state allows, for a person who may act."""
    if not person.may(Permission.PROGRAMME_ACT):
        return frozenset()
    steps: set[str] = set()
    if state in (J.APPLIED, J.NEEDS_REVIEW, J.NOT_ELIGIBLE):
        steps.add("review")
    if state == J.ELIGIBLE:
        steps.add("call")
    if state == J.CALL_CONFIRMED or (state == J.WAITING_LIST and not has_diagnosis):
        steps.add("prediagnose")
    if state in BEFORE_ADMISSION:
        steps.add("refuse")
    if state in WITHDRAWABLE:
        steps.add("withdraw")
    if state in (J.ADMITTED, J.CONSENTED):
        steps |= {"consent_url", "consented"}
    if state == J.CONSENTED:
        steps.add("verify")
    if state == J.TENANT_VERIFIED:
        steps.add("start")
    if state in DECIDABLE:
        steps.add("decide")
    return frozenset(steps)


async def applications(request: Request) -> Response:
    """`GET /programme`: the companies by journey state, with the calls due and overdue."""
    person = need(request, Permission.PROGRAMME_READ)
    runtime = _runtime(request)
    today = _today(runtime)
    wanted_state = request.query_params.get("state", "")
    wanted_cohort = request.query_params.get("cohort", "")
    overdue_only = request.query_params.get("overdue") == "1"
    if wanted_state and wanted_state not in {s.value for s in J}:
        wanted_state = ""
    with runtime.sessions() as session:
        cohorts = cohort_view.visible_cohorts(session, person.scope)
        chosen = None
        if wanted_cohort:
            chosen = cohort_view.visible_cohort(session, person.scope, wanted_cohort)
            if chosen is None:
                raise HTTPException(404)
        due_on = admission.due_on(runtime.config.settings)
        every = journey_view.application_rows(
            session, due_on, today, cohort=chosen, scope=person.scope
        )
    counts = {state: sum(1 for row in every if row.state == state) for state in J}
    rows = [
        row
        for row in every
        if (not wanted_state or row.state.value == wanted_state)
        and (not overdue_only or row.overdue)
    ]
    waiting_call = (J.ELIGIBLE, J.NEEDS_REVIEW)
    return render(
        request,
        "programme_applications.html.j2",
        section="programme",
        rows=rows,
        counts=counts,
        states=[s for s in J if counts[s]],
        all_states=list(J),
        cohorts=cohorts,
        wanted_state=wanted_state,
        wanted_cohort=wanted_cohort,
        overdue_only=overdue_only,
        overdue=sum(1 for row in every if row.overdue),
        calls_due=sum(1 for row in every if row.state in waiting_call and row.call_due_on),
        waiting_call=waiting_call,
        today=today,
        label=state_label,
        call_days=runtime.config.settings.programme.call_business_days,
    )


async def company_page(request: Request) -> Response:
    """`GET /companies/{key}`: the company's whole journey, and the steps it may take."""
    person = need(request, Permission.PROGRAMME_READ)
    runtime = _runtime(request)
    settings = runtime.config.settings
    now = runtime.clock()
    today = jst_date(now)
    with runtime.sessions() as session:
        company = _visible(session, person, request.path_params["key"])
        view = journey_view.company_view(
            session, settings.programme, company, admission.due_on(settings), today
        )
        seat = next(
            (
                r
                for r in seats.seat_counts(session, now, person.scope)
                if r.company_key == company.key
            ),
            None,
        )
        tenant = view.tenant
        devices = cohort_view.company_devices(session, tenant.id) if tenant else []
        tickets = cohort_view.company_tickets(session, tenant.id) if tenant else []
        reports = (
            archive_listing(session, company_id=company.id, scope=person.scope)
            if person.may(Permission.REPORTS_READ)
            else []
        )
        html = render(
            request,
            "company.html.j2",
            section="programme",
            view=view,
            c=company,
            seat=seat,
            devices=devices,
            tickets=tickets,
            reports=reports,
            steps=allowed_steps(view.state, person, view.diagnosis is not None),
            label=state_label,
            state_word=state_word,
            history_word=history_word,
            decision_label=decision_label,
            due_label=due_label,
            policies=POLICIES,
            cohorts=cohort_view.visible_cohorts(session, person.scope),
            today=today,
        )
    return html


def _back(key: str) -> Response:
    return RedirectResponse(f"/companies/{key}", status_code=303)


def _refused(request: Request, key: str, err: Exception) -> Response:
    """A step the service refused: said on the company's page, nothing changed (another
    cohort's company it names is "another company" to a person limited to cohorts)."""
    why = one_line(say(err))
    person = signed_in(request)
    if person is not None and not person.scope.everything:
        with _runtime(request).sessions() as session:
            why = person.scope.hide_others(session, why, _("another company"))
    flash(request, _("Not done: %(why)s", why=why[:400]), "error")
    return _back(key)


def _text(request: Request, name: str, limit: int = 2000) -> str:
    value = request.state.form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _step(
    request: Request, work: Callable[[Session, Runtime, Person, str, datetime], str]
) -> Response:
    """Run one journey step in a transaction, as the person; 303 back with its message."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    key = request.path_params["key"]
    with runtime.sessions() as session:
        company = _visible(session, person, key)
        key = company.key
    try:
        with transaction(runtime.sessions) as session:
            said = work(session, runtime, person, key, runtime.clock())
    except (EdrTrialError, ValueError) as err:
        return _refused(request, key, err)
    flash(request, said, "ok")
    return _back(key)


def _moved(outcome: Outcome) -> str:
    state = state_label(outcome.state)
    if outcome.position is not None:
        return _(
            "Now: %(state)s (position %(n)s on the waiting list).", state=state, n=outcome.position
        )
    return _("Now: %(state)s.", state=state)


@action(Permission.PROGRAMME_ACT)
async def review_step(request: Request) -> Response:
    """Decide an application's eligibility (the rules left it for review, or are overruled)."""
    decision = _text(request, "decision")
    reason = _text(request, "reason")

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        if decision not in ("eligible", "not_eligible"):
            raise ValueError(_("choose eligible or not eligible"))
        if not reason:
            raise ValueError(_("give the reason"))
        company = company_by_key(session, key)
        assert company is not None
        review(session, company, Verdict(decision), reason=reason, actor=person.actor, at=at)
        return _("Now: %(state)s.", state=state_label(J(company.state)))

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def call_step(request: Request) -> Response:
    """Record the confirmation call: a place held, or the waiting list."""
    notes = _text(request, "notes")
    cohort = _text(request, "cohort") or None

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        if cohort is not None and cohort_view.visible_cohort(session, person.scope, cohort) is None:
            raise ValueError(_("no such cohort"))
        outcome = admission.call(
            session,
            runtime.config.settings,
            key,
            actor=person.actor,
            at=at,
            notes=notes,
            cohort=cohort,
        )
        return _("Call recorded.") + " " + _moved(outcome)

    return _step(request, work)


def _count(request: Request, name: str, *, required: bool) -> int | None:
    raw = _text(request, name, 12)
    if not raw:
        if required:
            raise ValueError(_("%(field)s: give a number", field=name))
        return None
    if not raw.isdigit():
        raise ValueError(_("%(field)s: give a number", field=name))
    return int(raw)


@action(Permission.PROGRAMME_ACT)
async def prediagnose_step(request: Request) -> Response:
    """Record the expert's pre-diagnosis: admitted, or refused with the reason."""
    form = request.state.form

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        edr = _text(request, "existing_edr")
        if form.get("edr_installed") not in ("yes", "no"):
            raise ValueError(_("say whether an EDR is installed"))
        policy = _text(request, "policy") or "none"
        if policy not in POLICIES:
            raise ValueError(_("choose a security policy"))
        users = _count(request, "edr_users", required=True)
        assert users is not None
        found = Diagnosis(
            edr_users=users,
            utm_devices=_count(request, "utm_devices", required=False) or 0,
            free_hub_ports=_count(request, "free_hub_ports", required=False),
            existing_utm=form.get("existing_utm") == "yes",
            existing_edr=edr if form.get("edr_installed") == "yes" else None,
            antivirus=_text(request, "antivirus"),
            policy=policy,
            network=_text(request, "network"),
            notes=_text(request, "notes"),
        )
        outcome = admission.prediagnose(
            session, runtime.config.settings, key, found, actor=person.actor, at=at
        )
        return _("Pre-diagnosis recorded.") + " " + _moved(outcome)

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def refuse_step(request: Request) -> Response:
    """Refuse an application before admission; the company is told why."""
    reason = _text(request, "reason")

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        if not reason:
            raise ValueError(_("give the reason"))
        outcome = admission.refuse(
            session, runtime.config.settings, key, reason, actor=person.actor, at=at
        )
        return _moved(outcome)

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def withdraw_step(request: Request) -> Response:
    """The company withdraws (its devices are offboarded once its tenant is connected)."""
    reason = _text(request, "reason")

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        if not reason:
            raise ValueError(_("give the reason"))
        outcome = admission.withdraw(
            session, runtime.config.settings, key, reason, actor=person.actor, at=at
        )
        return _moved(outcome)

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def consent_url_step(request: Request) -> Response:
    """Issue a new consent link and show it with the mail to send the administrator."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    with runtime.sessions() as session:
        key = _visible(session, person, request.path_params["key"]).key
    try:
        with transaction(runtime.sessions) as session:
            issued = issue_consent_link(
                session, runtime.config.settings, key, actor=person.actor, at=runtime.clock()
            )
    except EdrTrialError as err:
        return _refused(request, key, err)
    return render(request, "company_consent.html.j2", section="programme", issued=issued)


@action(Permission.PROGRAMME_ACT)
async def consented_step(request: Request) -> Response:
    """Record the administrator's consent: the reply address, or the tenant id entered."""
    reply = _text(request, "reply", 4000) or None
    tenant_id = _text(request, "tenant_id", 200) or None

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        if (reply is None) == (tenant_id is None):
            raise ValueError(_("give the reply address or the tenant id (one of them)"))
        row = record_consented(
            session,
            runtime.config.settings,
            key,
            reply=reply,
            tenant_id=tenant_id,
            actor=person.actor,
            at=at,
        )
        return _("Consent recorded: tenant %(tenant)s.", tenant=row.external_id)

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def verify_step(request: Request) -> Response:
    """Check the consented tenant's every API; verified when all pass."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    with runtime.sessions() as session:
        key = _visible(session, person, request.path_params["key"]).key
    try:
        found = await run_in_threadpool(verify_tenant, runtime, key, person.actor)
    except EdrTrialError as err:
        return _refused(request, key, err)
    if found.passed:
        flash(request, _("Tenant verified: every check passed."), "ok")
    else:
        failed = [c for c in found.checks if not c.ok]
        flash(
            request,
            _(
                "Not verified: %(n)s of %(total)s checks failed.",
                n=len(failed),
                total=len(found.checks),
            ),
            "error",
        )
        for check in failed[:4]:
            flash(request, one_line(f"{check.name}: {check.reason} {check.action}")[:400], "warn")
    return _back(key)


@action(Permission.PROGRAMME_ACT)
async def start_step(request: Request) -> Response:
    """Start a verified company's trial (today, or the day given)."""
    on = _text(request, "on", 10)

    def work(session: Session, runtime: Runtime, person: Person, key: str, at: datetime) -> str:
        starts_on = date.fromisoformat(on) if on else jst_date(at)
        company = company_by_key(session, key)
        assert company is not None
        started = start_trial(
            session,
            runtime.config.settings.programme,
            company,
            starts_on,
            actor=person.actor,
            at=at,
        )
        return _(
            "Trial from %(start)s to %(end)s.",
            start=starts_on.isoformat(),
            end=started.ends_on.isoformat(),
        )

    return _step(request, work)


@action(Permission.PROGRAMME_ACT)
async def decide_step(request: Request) -> Response:
    """Record the company's answer: continue, offboard, or extend until a day."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    decision = _text(request, "decision")
    until_text = _text(request, "until", 10)
    reason = _text(request, "reason")
    with runtime.sessions() as session:
        key = _visible(session, person, request.path_params["key"]).key
    try:
        if decision not in ("continue", "offboard", "extend"):
            raise ValueError(_("choose continue, offboard or extend"))
        until = date.fromisoformat(until_text) if until_text else None
        if until is not None and decision != "extend":
            raise ValueError(_("a new last day goes with extend only"))
        decided, cancelled = await run_in_threadpool(
            lambda: decide(runtime, key, decision, actor=person.actor, until=until, reason=reason)
        )
    except (EdrTrialError, ValueError) as err:
        return _refused(request, key, err)
    said = _(
        "Decision recorded: %(decision)s (trial ends %(end)s, now %(state)s).",
        decision=decision_label(decided.decision),
        end=decided.ends_on.isoformat(),
        state=state_label(decided.journey),
    )
    if cancelled:
        said += " " + _("%(n)s planned offboarding task(s) cancelled.", n=cancelled)
    flash(request, said, "ok")
    return _back(key)


@action(Permission.PROGRAMME_ACT)
async def uninstalled_step(request: Request) -> Response:
    """Confirm that the EDR was uninstalled by hand from a device its offboarding handed
    over to a person (or one still reporting), as `trial uninstalled` does."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    device, note = _text(request, "device", 200), _text(request, "note")
    with runtime.sessions() as session:
        key = _visible(session, person, request.path_params["key"]).key
    try:
        name = await run_in_threadpool(
            lambda: uninstalled_by_hand(runtime, key, device, actor=person.actor, note=note)
        )
    except EdrTrialError as err:
        return _refused(request, key, err)
    flash(request, _("%(device)s confirmed uninstalled.", device=name), "ok")
    return _back(key)


ROUTES = [
    Route("/programme", applications, methods=["GET"], name="applications"),
    Route("/companies/{key}", company_page, methods=["GET"], name="company"),
    Route("/companies/{key}/review", review_step, methods=["POST"]),
    Route("/companies/{key}/call", call_step, methods=["POST"]),
    Route("/companies/{key}/prediagnose", prediagnose_step, methods=["POST"]),
    Route("/companies/{key}/refuse", refuse_step, methods=["POST"]),
    Route("/companies/{key}/withdraw", withdraw_step, methods=["POST"]),
    Route("/companies/{key}/consent-url", consent_url_step, methods=["POST"]),
    Route("/companies/{key}/consented", consented_step, methods=["POST"]),
    Route("/companies/{key}/verify", verify_step, methods=["POST"]),
    Route("/companies/{key}/start", start_step, methods=["POST"]),
    Route("/companies/{key}/decide", decide_step, methods=["POST"]),
    Route("/companies/{key}/uninstalled", uninstalled_step, methods=["POST"]),
]
