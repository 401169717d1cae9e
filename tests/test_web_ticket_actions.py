"""The desk's actions on a ticket in the console, against the sandbox's Defender: each step
changes the ticket and is audited as the person who took it; isolating asks first, then
sends once to the right device of the right tenant; what the service refuses is a message
on the ticket page; roles, cohorts and the CSRF token hold on every POST."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from test_desk_end_to_end import body, mails_to

from edrtrial.access.roles import Permission
from edrtrial.db import transaction
from edrtrial.models import Alert, AuditEvent, Cohort, ResponseAction, Ticket, TicketNote
from edrtrial.sandbox import SAMPLE_TENANTS
from edrtrial.service import desk_actions, jobs
from edrtrial.web.templating import ENV

from web_support import Console, SignedIn

SAKURA = SAMPLE_TENANTS[0]
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\u202eexe.pdf"


@pytest.fixture
def console(sandboxed_console: Console) -> Console:
    return sandboxed_console


def incident(console: Console, device_name: str | None = None) -> tuple[int, str]:
    """A new device of sakura-seisakusho raises an alert; one poll makes its ticket. The
    ticket's number and the device's id in Defender."""
    world = console.world
    device = world.add_devices(SAKURA.tenant_id, 1, detection_test_alert=False)[0]
    if device_name is not None:
        world.rename_device(SAKURA.tenant_id, device, device_name)
    world.add_alerts(SAKURA.tenant_id, "hands_on_keyboard", 1, device_id=device, severity="high")
    jobs.poll(console.runtime)
    with console.runtime.sessions() as session:
        ticket_id = next(
            a.ticket_id
            for a in session.scalars(select(Alert).where(Alert.ticket_id.is_not(None)))
            if device in a.device_source_ids
        )
    assert ticket_id is not None
    return ticket_id, device


def ticket(console: Console, ticket_id: int) -> Ticket:
    with console.runtime.sessions() as session:
        return session.get_one(Ticket, ticket_id)


def audited(console: Console, action: str, target: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    if target is not None:
        query = query.where(AuditEvent.target == target)
    with console.runtime.sessions() as session:
        return list(session.scalars(query.order_by(AuditEvent.id)))


def device_id(console: Console, source_id: str) -> int:
    from edrtrial.models import Device

    with console.runtime.sessions() as session:
        return session.scalars(select(Device.id).where(Device.source_id == source_id)).one()


def step(op: SignedIn, path: str, data: dict[str, str] | None = None) -> str:
    """POST a form of the ticket page; the page it leads back to (with its message)."""
    answer = op.post(path, data or {})
    assert answer.status_code == 303, answer.text
    ticket_path = path.rsplit("/", 1)[0]
    assert answer.headers["location"] == ticket_path
    return op.get(ticket_path).text


def operator_of(console: Console, name: str = "sato", **kwargs) -> SignedIn:
    password = console.add_user(name, ["operator"], **kwargs)
    return console.signed_in(name, password)


def test_each_step_changes_the_ticket_and_is_audited_as_the_person(
    tmp_path: Path, console: Console
) -> None:
    mail_dir = tmp_path / "mail"
    tid, _ = incident(console)
    op = operator_of(console)
    target = f"ticket:{tid}"

    page = step(op, f"/tickets/{tid}/acknowledge")
    assert f"チケット #{tid} を受領しました。" in page
    assert ticket(console, tid).state == "acknowledged"
    [ack] = audited(console, "ticket.acknowledged", target)
    assert ack.actor == "web:sato" and ack.detail == {"assignee": "sato"}

    page = step(op, f"/tickets/{tid}/assign", {"assignee": "tanaka"})
    assert f"チケット #{tid} の担当者を tanaka にしました。" in page
    assert ticket(console, tid).assignee == "tanaka"
    step(op, f"/tickets/{tid}/assign", {"assignee": "", "to_me": "1"})
    assert ticket(console, tid).assignee == "sato"
    assigned = audited(console, "ticket.assigned", target)
    assert [(e.actor, e.detail["to"]) for e in assigned] == [
        ("web:sato", "tanaka"),
        ("web:sato", "sato"),
    ]

    step(op, f"/tickets/{tid}/start")
    assert ticket(console, tid).state == "in_progress"
    assert audited(console, "ticket.in_progress", target)[0].actor == "web:sato"

    text = "電話で状況を確認。\n担当者は不在、15時に折り返し。"
    page = step(op, f"/tickets/{tid}/note", {"text": text})
    assert f"チケット #{tid} にメモを追加しました。" in page
    with console.runtime.sessions() as session:
        [note] = session.scalars(select(TicketNote).where(TicketNote.ticket_id == tid)).all()
        assert note.text == text and note.author == "web:sato"
    assert audited(console, "ticket.note", target)[0].actor == "web:sato"

    page = step(op, f"/tickets/{tid}/notify", {"text": "本日15時にお電話します。"})
    assert "企業への連絡を送信待ちにしました" in page
    [told] = audited(console, "ticket.company_notified", target)
    assert told.actor == "web:sato" and told.detail["text"] == "本日15時にお電話します。"
    sent = [m for m in mails_to(mail_dir, "it@sakura.example.jp") if "本日15時" in body(m)]
    assert len(sent) == 1, "the company's message goes out at once"

    # Resolving needs the programme's five-part incident summary: missing parts are said.
    page = step(op, f"/tickets/{tid}/resolve", {"when": "12/06 10:00", "report": "1"})
    assert (
        "解決にはインシデントの概要が必要です" in page and "the cause (インシデントの原因)" in page
    )
    assert ticket(console, tid).state == "in_progress"
    assert audited(console, "ticket.resolved") == []

    summary = {
        "when": "2026年12月6日 10:00頃",
        "what": "遠隔操作による不審なサービスの実行",
        "cause": "公開されていたリモートデスクトップへの不正ログイン",
        "handling": "端末をネットワークから隔離し、パスワードを変更",
        "effect": "ほかの端末への拡大は確認されていません",
    }
    form = {**summary, "classification": "truePositive", "determination": "malware", "report": "1"}
    page = step(op, f"/tickets/{tid}/resolve", form)
    assert f"チケット #{tid} を解決済みにしました。" in page
    done = ticket(console, tid)
    assert done.state == "resolved" and done.summary == summary
    assert done.classification == "truepositive" and done.determination == "malware"
    [resolved] = audited(console, "ticket.resolved", target)
    assert resolved.actor == "web:sato" and resolved.detail["summary"] == summary

    step(op, f"/tickets/{tid}/close")
    assert ticket(console, tid).state == "closed"
    page = step(op, f"/tickets/{tid}/reopen", {"reason": "同じ端末で再検知"})
    assert f"チケット #{tid} を再開しました。" in page
    assert ticket(console, tid).state == "in_progress"
    [reopened] = audited(console, "ticket.reopened", target)
    assert reopened.actor == "web:sato" and reopened.detail["reason"] == "同じ端末で再検知"


def test_a_step_the_ticket_s_state_refuses_is_a_message_not_an_error(console: Console) -> None:
    tid, _ = incident(console)
    op = operator_of(console)
    step(op, f"/tickets/{tid}/acknowledge")
    page = step(op, f"/tickets/{tid}/acknowledge")  # twice: the service refuses
    assert "操作できませんでした" in page
    page = step(op, f"/tickets/{tid}/reopen", {"reason": "x"})
    assert "操作できませんでした" in page
    assert ticket(console, tid).state == "acknowledged"
    assert step(op, f"/tickets/{tid}/note", {"text": "   "}).count("操作できませんでした") == 1

    # In English on request, the same messages.
    op.post("/language", {"lang": "en", "next": "/"})
    page = step(op, f"/tickets/{tid}/start")
    assert f"Ticket #{tid} is in progress." in page


def test_isolating_asks_first_then_sends_once_to_the_right_device(console: Console) -> None:
    tid, device = incident(console)
    other = console.world.add_devices(SAKURA.tenant_id, 1, detection_test_alert=False)[0]
    jobs.inventory(console.runtime)
    world, store_id = console.world, device_id(console, device)
    op = operator_of(console)

    asked = op.get(f"/tickets/{tid}/isolate", params={"device": store_id})
    assert asked.status_code == 200
    with console.runtime.sessions() as session:
        from edrtrial.models import Device

        name = session.get_one(Device, store_id).name
    assert name in asked.text and SAKURA.name in asked.text and SAKURA.tenant_id in asked.text
    assert "端末を隔離しますか" in asked.text and "ネットワークから切り離され" in asked.text
    assert 'data-action="confirm-isolate"' in asked.text
    assert "<dt>提案元</dt><dd>playbook</dd>" in asked.text

    # A POST without the confirmation only asks.
    unconfirmed = op.post(f"/tickets/{tid}/isolate", {"device": str(store_id)})
    assert unconfirmed.status_code == 200 and "端末を隔離しますか" in unconfirmed.text
    assert device not in world.action_counts(SAKURA.tenant_id)

    sent = op.post(f"/tickets/{tid}/isolate", {"device": str(store_id), "confirm": str(store_id)})
    assert sent.status_code == 303 and sent.headers["location"] == f"/tickets/{tid}"
    page = op.get(f"/tickets/{tid}").text
    assert f"{name}（{SAKURA.name}）の隔離" in page and "EDRが実行しました" in page
    assert world.action_counts(SAKURA.tenant_id)[device] == {"Isolate": 1}
    assert world.is_isolated(SAKURA.tenant_id, device)
    assert not world.is_isolated(SAKURA.tenant_id, other)
    [planned] = audited(console, "isolate.planned", f"ticket:{tid}")
    assert planned.actor == "web:sato" and planned.detail["device"] == name
    with console.runtime.sessions() as session:
        isolations = session.scalars(
            select(ResponseAction).where(
                ResponseAction.ticket_id == tid, ResponseAction.kind == "isolate"
            )
        ).all()
        # The playbook's proposal gave way to the operator's isolation.
        assert [(a.status, a.requested_by) for a in isolations if a.status != "superseded"] == [
            ("succeeded", "web:sato")
        ]

    # Twice: refused with the reason, up front and on a forged confirmation; not sent again.
    again = op.get(f"/tickets/{tid}/isolate", params={"device": store_id})
    assert "すでに隔離されています" in again.text  # the service's refusal, in Japanese
    assert 'data-action="confirm-isolate"' not in again.text
    page = step(op, f"/tickets/{tid}/isolate", {"device": str(store_id), "confirm": str(store_id)})
    assert "操作できませんでした" in page and "すでに隔離されています" in page
    assert world.action_counts(SAKURA.tenant_id)[device] == {"Isolate": 1}

    # A device the ticket does not name is not acted on.
    stranger = device_id(console, other)
    page = step(op, f"/tickets/{tid}/isolate", {"device": str(stranger), "confirm": str(stranger)})
    assert "操作できませんでした" in page and f"チケット #{tid} にその端末はありません" in page
    assert other not in world.action_counts(SAKURA.tenant_id)

    # Release, confirmed the same way.
    released = op.get(f"/tickets/{tid}/release", params={"device": store_id})
    assert "端末の隔離を解除しますか" in released.text
    step(op, f"/tickets/{tid}/release", {"device": str(store_id), "confirm": str(store_id)})
    assert not world.is_isolated(SAKURA.tenant_id, device)
    assert world.action_counts(SAKURA.tenant_id)[device] == {"Isolate": 1, "Unisolate": 1}


def test_a_secretariat_user_s_forged_isolation_is_refused_and_audited(console: Console) -> None:
    tid, device = incident(console)
    store_id = device_id(console, device)
    password = console.add_user("suzuki", ["secretariat"])
    clerk = console.signed_in("suzuki", password)
    assert clerk.get(f"/tickets/{tid}/isolate", params={"device": store_id}).status_code == 403
    forged = clerk.post(
        f"/tickets/{tid}/isolate", {"device": str(store_id), "confirm": str(store_id)}
    )
    assert forged.status_code == 403
    [refused] = audited(console, "web.refused")
    assert refused.actor == "web:suzuki" and refused.target == f"POST /tickets/{tid}/isolate"
    assert refused.detail["permission"] == Permission.DEVICE_ACT.value
    assert device not in console.world.action_counts(SAKURA.tenant_id)
    assert audited(console, "isolate.planned") == []


def test_a_viewer_cannot_acknowledge_and_no_post_goes_without_its_token(console: Console) -> None:
    tid, _ = incident(console)
    password = console.add_user("yamada", ["viewer"])
    viewer = console.signed_in("yamada", password)
    assert viewer.post(f"/tickets/{tid}/acknowledge").status_code == 403
    op = operator_of(console)
    tokenless = op.http.post(f"/tickets/{tid}/acknowledge", data={})
    assert tokenless.status_code == 403
    assert ticket(console, tid).state == "new"
    assert [e.actor for e in audited(console, "web.refused")] == ["web:yamada", "web:sato"]


def test_another_cohort_s_ticket_is_not_found(console: Console) -> None:
    tid, device = incident(console)
    store_id = device_id(console, device)
    with transaction(console.runtime.sessions) as session:
        course = session.scalars(select(Cohort.course)).first()
        session.add(Cohort(key="sample-2", name="第2期", course=course, capacity=10))
    limited = operator_of(console, "kato", cohorts=["sample-2"])
    for path in ("acknowledge", "start", "close"):
        assert limited.post(f"/tickets/{tid}/{path}").status_code == 404
    assert limited.post(f"/tickets/{tid}/note", {"text": "x"}).status_code == 404
    assert limited.get(f"/tickets/{tid}/isolate", params={"device": store_id}).status_code == 404
    refused = limited.post(
        f"/tickets/{tid}/isolate", {"device": str(store_id), "confirm": str(store_id)}
    )
    assert refused.status_code == 404 and SAKURA.name not in refused.text
    assert limited.post("/tickets/999999/acknowledge").status_code == 404
    assert ticket(console, tid).state == "new"
    assert device not in console.world.action_counts(SAKURA.tenant_id)
    # The operator of that company's cohort acts on it.
    own = operator_of(console, "ito", cohorts=["sample-1"])
    step(own, f"/tickets/{tid}/acknowledge")
    assert ticket(console, tid).state == "acknowledged"


def test_hostile_text_stays_text_on_the_pages(console: Console) -> None:
    tid, device = incident(console, device_name=HOSTILE)
    op = operator_of(console)
    page = step(op, f"/tickets/{tid}/assign", {"assignee": "<b>x</b><script>alert(3)</script>"})
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "<script>alert(3)" not in page
    asked = op.get(f"/tickets/{tid}/isolate", params={"device": device_id(console, device)})
    assert asked.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in asked.text
    assert "<img src=x" not in asked.text and "<script>alert(1)" not in asked.text
    assert "\u202e" in asked.text  # shown as the text it is, inside an escaped element


def _render(console: Console, tid: int, roles: list[str]) -> str:
    """The ticket page's action forms for a person with `roles` (as the page includes them)."""
    from edrtrial.access import accounts
    from edrtrial.models import Company, ConsoleUser, Tenant

    username = "-".join(roles)
    console.add_user(username, roles)
    with console.runtime.sessions() as session:
        user = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one()
        person = accounts.person(user)
        t = session.get_one(Ticket, tid)
        tenant = session.get_one(Tenant, t.tenant_id)
        return ENV.get_template("ticket_actions.html.j2").render(
            ticket=t,
            company=session.get_one(Company, tenant.company_id),
            tenant=tenant,
            devices=desk_actions.device_rows(session, t),
            person=person,
            csrf="token",
            now=console.runtime.clock(),
            P=Permission,
        )


def test_the_forms_offer_only_what_the_person_and_the_ticket_s_state_allow(
    console: Console,
) -> None:
    tid, device = incident(console)
    forms = _render(console, tid, ["operator"])
    for action in ("acknowledge", "assign", "note", "notify", "resolve", "isolate"):
        assert f'data-action="{action}"' in forms, action
    assert 'data-action="release"' not in forms and 'data-action="reopen"' not in forms
    # The playbook proposed isolating the device: the button says so.
    assert 'data-proposed="1"' in forms and "隔離する（playbook の提案）" in forms
    assert forms.count('name="csrf" value="token"') >= 5
    for field in ("when", "what", "cause", "handling", "effect"):
        assert f'name="{field}"' in forms
    assert "発生日時" in forms and "対応の効果" in forms
    assert 'name="report" value="1" checked' in forms

    for roles in (["secretariat"], ["viewer"]):
        assert "data-action" not in _render(console, tid, roles)

    op = operator_of(console)
    store_id = device_id(console, device)
    step(op, f"/tickets/{tid}/isolate", {"device": str(store_id), "confirm": str(store_id)})
    forms = _render(console, tid, ["admin"])
    assert 'data-action="release"' in forms and 'data-action="isolate"' not in forms
    step(op, f"/tickets/{tid}/release", {"device": str(store_id), "confirm": str(store_id)})
    summary = {k: "x" for k in ("when", "what", "cause", "handling", "effect")}
    step(op, f"/tickets/{tid}/resolve", summary)
    resolved = _render(console, tid, ["operator", "viewer"])
    assert 'data-action="reopen"' in resolved and 'data-action="close"' in resolved
    for gone in ("acknowledge", "resolve", "assign", "isolate", "release"):
        assert f'data-action="{gone}"' not in resolved, gone
