"""The desk's queue and ticket pages over HTTP: what needs a person comes first, the filters
narrow it, the rows refresh only when something changed, a ticket shows its evidence,
devices, proposed isolations and history as text, and a person limited to a cohort sees
nothing of another cohort."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edrtrial.db import transaction
from edrtrial.desk import operator
from edrtrial.models import (
    Alert,
    AuditEvent,
    Cohort,
    Company,
    Device,
    ResponseAction,
    Tenant,
    Ticket,
)

import clock
from web_support import Console, SignedIn, start_console

HOSTILE_TITLE = '<script>alert("t")</script> 不審な\u202eexe.txt'
HOSTILE_COMMAND = 'powershell -enc <img src=x onerror="alert(1)">'
HOSTILE_NOTE = "first line <b>bold</b>\nsecond line"


@dataclass
class Desk:
    console: Console
    now: datetime
    ids: dict[str, int]


def tenant_of(session: Any, key: str) -> Tenant:
    return session.scalars(
        select(Tenant).join(Company, Tenant.company_id == Company.id).where(Company.key == key)
    ).one()


def add_ticket(
    session: Any,
    tenant: Tenant,
    title: str,
    *,
    priority: str = "P3",
    state: str = "new",
    opened: datetime,
    due: datetime | None = None,
    assignee: str = "",
    alerts: int = 1,
    device: tuple[str, str] = ("dev-1", "pc-001"),
    raw: dict[str, Any] | None = None,
) -> Ticket:
    ticket = Ticket(
        tenant_id=tenant.id,
        correlation_key=f"k-{title}-{opened.isoformat()}",
        title=title,
        priority=priority,
        state=state,
        assignee=assignee,
        created_at=opened,
        updated_at=opened,
        ack_due_at=due,
        channel="desk",
    )
    session.add(ticket)
    session.flush()
    for n in range(alerts):
        session.add(
            Alert(
                tenant_id=tenant.id,
                source="defender",
                source_id=f"al-{ticket.id}-{n}",
                title=title,
                severity="high",
                status="new",
                device_source_ids=[device[0]],
                device_names=[device[1]],
                created_at=opened + timedelta(minutes=n),
                raw=raw or {},
                ticket_id=ticket.id,
            )
        )
    session.flush()
    return ticket


PROCESS_RAW = {
    "evidence": [
        {
            "@odata.type": "#microsoft.graph.security.processEvidence",
            "processId": 4780,
            "parentProcessId": 668,
            "processCommandLine": HOSTILE_COMMAND,
            "imageFile": {"fileName": "powershell.exe", "filePath": "C:\\Windows\\System32"},
            "parentProcessImageFile": {"fileName": "winword.exe", "filePath": "C:\\Office"},
            "userAccount": {"accountName": "yamada", "domainName": "SAKURA"},
        },
        {
            "@odata.type": "#microsoft.graph.security.processEvidence",
            "processId": 5120,
            "parentProcessId": 4780,
            "processCommandLine": "cmd.exe /c whoami",
            "imageFile": {"fileName": "cmd.exe", "filePath": "C:\\Windows\\System32"},
        },
        {
            "@odata.type": "#microsoft.graph.security.fileEvidence",
            "fileDetails": {
                "fileName": "invoice.docm",
                "filePath": "C:\\Users\\yamada\\Downloads",
                "sha256": "a" * 64,
            },
        },
        {
            "@odata.type": "#microsoft.graph.security.urlEvidence",
            "url": "http://evil.example/x?a=<b>",
        },
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "203.0.113.9"},
    ]
}


@pytest.fixture
def desk(tmp_path: Path, database_url: str, now: datetime) -> Iterator[Desk]:
    with start_console(tmp_path, database_url) as console:
        ids: dict[str, int] = {}
        with transaction(console.runtime.sessions) as session:
            sakura = tenant_of(session, "sakura-seisakusho")
            aozora = tenant_of(session, "aozora-design")
            other_cohort = Cohort(key="other-2", name="第2期", course="edr", capacity=10)
            session.add(other_cohort)
            session.flush()
            kita = Company(
                key="kita-kogyo",
                name="北工業株式会社",
                contact_email="it@kita.example.jp",
                cohort_id=other_cohort.id,
            )
            session.add(kita)
            session.flush()
            kita_tenant = Tenant(company_id=kita.id, connector="defender", external_id="t-kita")
            session.add(kita_tenant)
            session.flush()
            ids["p1_fresh"] = add_ticket(
                session,
                sakura,
                "P1 fresh",
                priority="P1",
                opened=now,
                due=now + timedelta(minutes=30),
            ).id
            ids["p3_overdue"] = add_ticket(
                session,
                aozora,
                "P3 overdue",
                priority="P3",
                opened=now - timedelta(hours=10),
                due=now - timedelta(minutes=20),
            ).id
            ids["p2_mine"] = add_ticket(
                session,
                sakura,
                HOSTILE_TITLE,
                priority="P2",
                state="acknowledged",
                opened=now - timedelta(hours=1),
                assignee="sato",
                alerts=2,
                raw=PROCESS_RAW,
            ).id
            ids["resolved"] = add_ticket(
                session,
                sakura,
                "Resolved one",
                priority="P1",
                state="resolved",
                opened=now - timedelta(days=2),
            ).id
            ids["other"] = add_ticket(
                session,
                kita_tenant,
                "Other cohort secret",
                priority="P1",
                opened=now - timedelta(hours=2),
                due=now - timedelta(hours=1),
                device=("dev-k", "kita-pc"),
            ).id
            ticket = session.get_one(Ticket, ids["resolved"])
            ticket.summary = {
                "when": "12/05 10:00",
                "what": "不審なマクロ",
                "cause": "添付ファイル",
                "handling": "端末を隔離",
                "effect": "拡大なし",
            }
            device = Device(
                tenant_id=sakura.id,
                source_id="dev-1",
                name="pc-001",
                last_seen=now - timedelta(days=5),
            )
            session.add(device)
            session.flush()
            session.add(
                ResponseAction(
                    dedupe_key=f"propose-isolate:{ids['p2_mine']}:dev-1",
                    tenant_id=sakura.id,
                    device_id=device.id,
                    ticket_id=ids["p2_mine"],
                    kind="isolate",
                    status="proposed",
                    reason="ransomware rule matched",
                    requested_by="playbook",
                    created_at=now,
                    updated_at=now,
                )
            )
            operator.note(session, ids["p2_mine"], HOSTILE_NOTE, "web:sato", now)
        yield Desk(console, now, ids)


def signed(desk: Desk, username: str, roles: list[str], cohorts: tuple[str, ...] = ()) -> SignedIn:
    password = desk.console.add_user(username, roles, cohorts=cohorts)
    return desk.console.signed_in(username, password)


def ticket_order(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-ticket="(\d+)"', html)]


def rows_url(html: str) -> str:
    found = re.search(r'hx-get="([^"]+)"', html)
    assert found
    return found.group(1).replace("&amp;", "&")


def test_the_queue_lists_open_tickets_overdue_first_then_by_priority(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    page = op.get("/desk")
    assert page.status_code == 200
    ids = desk.ids
    assert ticket_order(page.text) == [
        ids["other"],
        ids["p3_overdue"],
        ids["p1_fresh"],
        ids["p2_mine"],
    ]
    assert ids["resolved"] not in ticket_order(page.text)
    assert "4 件" in page.text
    overdue_row = re.search(rf'<tr id="ticket-{ids["p3_overdue"]}"[^>]*>', page.text)
    assert overdue_row and 'class="overdue"' in overdue_row.group(0)
    assert "超過" in page.text  # the time past the deadline, in Japanese
    assert "残り" in page.text  # the time left of the P1's deadline


def test_each_filter_narrows_the_queue(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    ids = desk.ids
    assert ticket_order(op.get("/desk?priority=P1").text) == [ids["other"], ids["p1_fresh"]]
    assert ticket_order(op.get("/desk?state=resolved").text) == [ids["resolved"]]
    assert ticket_order(op.get("/desk?state=acknowledged").text) == [ids["p2_mine"]]
    assert ticket_order(op.get("/desk?mine=1").text) == [ids["p2_mine"]]
    assert ticket_order(op.get("/desk?overdue=1").text) == [ids["other"], ids["p3_overdue"]]
    assert ticket_order(op.get("/desk?company=aozora-design").text) == [ids["p3_overdue"]]
    assert ticket_order(op.get("/desk?company=sakura-seisakusho&priority=P2").text) == [
        ids["p2_mine"]
    ]
    mine = op.get("/desk?mine=1").text
    assert 'name="mine" value="1" checked' in mine


def test_the_rows_answer_204_until_a_ticket_arrives(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    url = rows_url(op.get("/desk").text)
    assert op.get(url, headers={"HX-Request": "true"}).status_code == 204
    with transaction(desk.console.runtime.sessions) as session:
        new = add_ticket(
            session,
            tenant_of(session, "aozora-design"),
            "A new arrival",
            priority="P2",
            opened=desk.now,
            due=desk.now + timedelta(hours=1),
        ).id
    fresh = op.get(url, headers={"HX-Request": "true"})
    assert fresh.status_code == 200
    assert new in ticket_order(fresh.text)
    assert "A new arrival" in fresh.text
    assert "<html" not in fresh.text  # a fragment, not a page
    again = rows_url(fresh.text)
    assert op.get(again).status_code == 204


def test_the_rows_keep_the_filters_and_the_scope(desk: Desk) -> None:
    limited = signed(desk, "kimura", ["operator"], cohorts=("sample-1",))
    page = limited.get("/desk?priority=P1")
    url = rows_url(page.text)
    assert "priority=P1" in url
    fragment = limited.get(url.split("v=")[0]).text
    assert desk.ids["other"] not in ticket_order(fragment)
    assert "Other cohort secret" not in fragment


def test_the_ticket_page_shows_evidence_devices_proposal_and_timeline(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    page = op.get(f"/tickets/{desk.ids['p2_mine']}")
    assert page.status_code == 200
    html = page.text
    # The process tree: winword started powershell, which started cmd.
    tree = html[html.index('class="process-tree"') :]
    assert tree.index("winword.exe") < tree.index("powershell.exe") < tree.index("cmd.exe")
    assert re.search(r"winword\.exe.*?<ul>.*?powershell\.exe.*?<ul>.*?cmd\.exe", tree, re.S)
    assert "cmd.exe /c whoami" in html
    assert "C:\\Users\\yamada\\Downloads\\invoice.docm" in html
    assert "203.0.113.9" in html
    assert "http://evil.example/x?a=&lt;b&gt;" in html
    assert "SAKURA\\yamada" in html
    # The device and its silence, the proposed isolation with who and why.
    assert "pc-001" in html
    assert "5" in html and "報告" in html
    assert "ransomware rule matched" in html
    assert "playbook" in html
    assert 'class="action-proposed"' in html
    # The timeline keeps the note's lines, as text.
    assert "first line &lt;b&gt;bold&lt;/b&gt;\nsecond line" in html
    assert "web:sato" in html
    assert "株式会社" in html or "sakura-seisakusho" in html


def test_a_resolved_ticket_shows_its_five_field_summary(desk: Desk) -> None:
    viewer = signed(desk, "suzuki", ["viewer"])
    html = viewer.get(f"/tickets/{desk.ids['resolved']}").text
    for label, text in (
        ("発生日時", "12/05 10:00"),
        ("インシデント内容", "不審なマクロ"),
        ("インシデントの原因", "添付ファイル"),
        ("対応方法", "端末を隔離"),
        ("対応の効果", "拡大なし"),
    ):
        assert label in html and text in html


def test_hostile_text_stays_text(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    for html in (op.get("/desk").text, op.get(f"/tickets/{desk.ids['p2_mine']}").text):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;" in html
        assert "<b>bold" not in html
        assert "<img src=x" not in html
        assert "\u202e" in html  # shown as the character it is, inside escaped text
    html = op.get(f"/tickets/{desk.ids['p2_mine']}").text
    assert "powershell -enc &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_a_person_limited_to_a_cohort_sees_nothing_of_another(desk: Desk) -> None:
    limited = signed(desk, "kimura", ["operator"], cohorts=("sample-1",))
    page = limited.get("/desk")
    assert desk.ids["other"] not in ticket_order(page.text)
    assert "Other cohort secret" not in page.text
    assert "kita-kogyo" not in page.text and "北工業" not in page.text
    assert "3 件" in page.text
    assert ticket_order(limited.get("/desk?company=kita-kogyo").text) == []
    assert ticket_order(limited.get("/desk?overdue=1").text) == [desk.ids["p3_overdue"]]
    fragment = limited.get("/desk/rows").text
    assert "Other cohort secret" not in fragment and "3 件" in fragment
    assert limited.get(f"/tickets/{desk.ids['other']}").status_code == 404
    assert limited.get("/tickets/999999").status_code == 404
    assert limited.get(f"/tickets/{desk.ids['p1_fresh']}").status_code == 200
    everyone = signed(desk, "sato", ["operator"])
    assert "北工業" in everyone.get("/desk").text
    assert everyone.get(f"/tickets/{desk.ids['other']}").status_code == 200


def test_a_viewer_reads_the_desk_and_nobody_signed_out_does(desk: Desk) -> None:
    viewer = signed(desk, "suzuki", ["viewer"])
    assert viewer.get("/desk").status_code == 200
    assert viewer.get(f"/tickets/{desk.ids['p1_fresh']}").status_code == 200
    anonymous = desk.console.client()
    assert anonymous.get("/desk").status_code == 303
    assert anonymous.get(f"/tickets/{desk.ids['p1_fresh']}").status_code == 303
    assert anonymous.get("/desk/rows", headers={"HX-Request": "true"}).headers.get("HX-Redirect")


def test_the_audit_of_reading_is_untouched(desk: Desk) -> None:
    """Reading the desk writes nothing (no refusal, no event)."""
    op = signed(desk, "sato", ["operator"])
    with desk.console.runtime.sessions() as session:
        before = len(session.scalars(select(AuditEvent.id)).all())
    op.get("/desk")
    op.get(f"/tickets/{desk.ids['p2_mine']}")
    with desk.console.runtime.sessions() as session:
        assert len(session.scalars(select(AuditEvent.id)).all()) == before


def test_the_rows_come_again_when_the_time_left_changes(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    page = op.get("/desk?priority=P1&company=sakura-seisakusho").text
    before = int(re.findall(r"残り (\d+)分", page)[0])
    url = rows_url(page)
    assert op.get(url).status_code == 204
    with clock.travel(desk.now + timedelta(minutes=5)):
        later = op.get(url)
        assert later.status_code == 200
        assert int(re.findall(r"残り (\d+)分", later.text)[0]) <= before - 3
        assert op.get(rows_url(later.text)).status_code == 204


def test_the_desk_reads_in_english_on_request(desk: Desk) -> None:
    op = signed(desk, "sato", ["operator"])
    assert op.post("/language", {"lang": "en", "next": "/desk"}).status_code == 303
    page = op.get("/desk").text
    assert "Desk queue" in page and "Tickets: 4" in page
    assert "overdue by" in page and "left" in page
    ticket = op.get(f"/tickets/{desk.ids['p2_mine']}").text
    assert "Process tree" in ticket and "proposed: waits for an operator" in ticket
