"""The administrator's pages: people and roles (audited as the administrator, who cannot lock
themselves out), playbooks tried on a file of alerts, the audit log with its filters and CSV,
the service's status; and every one of them refused to a person without the permission."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from edrtrial import audit
from edrtrial.access import accounts
from edrtrial.db import transaction
from edrtrial.errors import AccountError
from edrtrial.ingest import health
from edrtrial.models import AuditEvent, Company, ConsoleUser, Tenant
from edrtrial.programme import cohorts
from edrtrial.timeutil import to_jst
from edrtrial.web.keys import sample_admin_file

from web_support import Console, SignedIn, start_console

PAYLOADS = Path("/work/shared/reference/payloads")
GRAPH_ALERTS = PAYLOADS / "graph__list_alerts_v2.json"
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">\u202eevil'
PAGES = ["/admin/users", "/admin/playbooks", "/admin/audit", "/admin/audit.csv"]


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        yield running


@pytest.fixture
def root(console: Console) -> SignedIn:
    password = console.add_user("root", ["admin"], display_name="管理 太郎")
    return console.signed_in("root", password)


def events(console: Console, action: str) -> list[AuditEvent]:
    with console.runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(query))


def account(console: Console, username: str) -> ConsoleUser:
    with console.runtime.sessions() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
        assert user is not None
        session.expunge(user)
        return user


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash \w+"[^>]*>([^<]*)</p>', page)


# -- who may see what ---------------------------------------------------------------------------


def test_the_admin_home_links_the_pages_each_person_may_use(console: Console, root: SignedIn):
    page = root.get("/admin")
    assert page.status_code == 200
    for href in ("/admin/users", "/admin/playbooks", "/admin/audit", "/admin/status"):
        assert f'href="{href}"' in page.text
    assert "ユーザーとロール" in page.text and "監査ログ" in page.text  # Japanese by default

    viewer = console.signed_in("miru", console.add_user("miru", ["viewer"]))
    shown = viewer.get("/admin")
    assert shown.status_code == 200
    assert 'href="/admin/status"' in shown.text and 'href="/admin/users"' not in shown.text


@pytest.mark.parametrize("role", ["operator", "secretariat", "viewer"])
def test_a_person_without_the_permission_is_refused_every_admin_page(console: Console, role):
    who = console.signed_in("sato", console.add_user("sato", [role]))
    for path in [*PAGES, "/admin/users/sato"]:
        assert who.get(path).status_code == 403, path
    assert who.get("/admin/status").status_code == 200  # every role reads the status


def test_every_admin_post_of_a_non_admin_is_refused_and_audited(console: Console, root):
    operator = console.signed_in("sato", console.add_user("sato", ["operator"]))
    posts = {
        "/admin/users": {"username": "mallory", "role": "admin", "generate": "1"},
        "/admin/users/root/roles": {"role": "viewer"},
        "/admin/users/root/password": {"generate": "1"},
        "/admin/users/root/disable": {},
        "/admin/users/root/enable": {},
    }
    for path, data in posts.items():
        assert operator.post(path, data).status_code == 403, path
    upload = operator.http.post(
        "/admin/playbooks/try",
        data={"csrf": operator.csrf},
        files={"alerts": ("a.json", b"{}", "application/json")},
    )
    assert upload.status_code == 403
    refused = events(console, "web.refused")
    assert len(refused) == 6
    assert {e.actor for e in refused} == {"web:sato"}
    assert {e.detail["permission"] for e in refused} == {"users.admin", "playbooks.admin"}
    assert account(console, "root").roles == ["admin"]  # nothing changed
    assert console.client().get("/admin/users").status_code == 303  # not signed in: sign in


# -- users and roles --------------------------------------------------------------------------


def test_an_admin_adds_a_user_with_roles_and_cohorts_audited_as_themselves(console, root):
    answer = root.post(
        "/admin/users",
        {
            "username": "Tanaka",
            "display_name": "田中 花子",
            "role": ["operator", "viewer"],
            "cohort": "sample-1",
            "password": "correct horse battery",
            "password2": "correct horse battery",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/users/tanaka"
    page = root.get("/admin/users/tanaka")
    assert "tanaka を追加しました。" in page.text
    [added] = [e for e in events(console, "users.add") if e.target == "user:tanaka"]
    assert added.actor == "web:root"
    assert added.detail == {"roles": ["operator", "viewer"], "cohorts": ["sample-1"]}
    listing = root.get("/admin/users").text
    assert "田中 花子" in listing and "sample-1" in listing and "オペレーター" in listing
    # The new person signs in with the password the administrator typed.
    tanaka = console.signed_in("tanaka", "correct horse battery")
    assert tanaka.get("/admin/status").status_code == 200


def test_a_generated_password_is_shown_once_and_opens_the_account(console, root):
    answer = root.post("/admin/users", {"username": "suzuki", "role": "viewer", "generate": "1"})
    assert answer.status_code == 200
    [password] = re.findall(r'<pre class="evidence password">([^<]+)</pre>', answer.text)
    assert len(password) >= 12
    assert password not in root.get("/admin/users/suzuki").text  # never again
    console.signed_in("suzuki", password)  # it works
    # A sample admin's first password, written to a file by `serve --with-sandbox`, is not
    # suzuki's: it stays when suzuki's password is reset.
    sample = sample_admin_file(console.config)
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_text("username: root\npassword: the first one\n", encoding="utf-8")
    reset = root.post("/admin/users/suzuki/password", {"generate": "1"})
    assert sample.is_file()
    [again] = re.findall(r'<pre class="evidence password">([^<]+)</pre>', reset.text)
    assert again != password
    assert [e.actor for e in events(console, "users.passwd")] == ["web:root"]
    console.signed_in("suzuki", again)
    root.post("/admin/users/root/password", {"generate": "1"})
    assert not sample.exists()  # root's own: the file's password no longer works


def test_wrong_input_is_a_message_on_the_form_not_an_error(console, root):
    differs = root.post(
        "/admin/users",
        {"username": "kato", "role": "viewer", "password": "a" * 12, "password2": "b" * 12},
    )
    assert differs.status_code == 400
    assert "2つのパスワードが一致しません" in differs.text
    assert 'value="kato"' in differs.text  # what was typed stays
    short = root.post(
        "/admin/users", {"username": "kato", "role": "viewer", "password": "x", "password2": "x"}
    )
    assert "パスワードは12文字以上にしてください" in short.text
    no_role = root.post("/admin/users", {"username": "kato", "generate": "1"})
    assert "ロールを少なくとも1つ選んでください" in no_role.text
    taken = root.post("/admin/users", {"username": "ROOT", "role": "viewer", "generate": "1"})
    assert taken.status_code == 400 and "root は既にあります" in taken.text
    odd = root.post("/admin/users", {"username": "a b", "role": "viewer", "generate": "1"})
    assert "ユーザー名は英数字と" in odd.text
    assert events(console, "users.add")[-1].target == "user:root"  # none added


def test_roles_and_cohorts_change_and_the_account_is_disabled_and_enabled(console, root):
    password = console.add_user("ito", ["viewer"])
    ito = console.signed_in("ito", password)
    changed = root.post("/admin/users/ito/roles", {"role": ["secretariat"], "cohort": "sample-1"})
    assert changed.status_code == 303
    assert account(console, "ito").roles == ["secretariat"]
    [event] = events(console, "users.roles")
    assert event.actor == "web:root" and event.detail["cohorts"] == ["sample-1"]
    assert event.detail["was_roles"] == ["viewer"]
    assert ito.get("/admin/status").status_code == 303  # new roles: the old session ended

    assert root.post("/admin/users/ito/disable").status_code == 303
    assert account(console, "ito").disabled_at is not None
    assert "アカウントを無効にしました。" in root.get("/admin/users/ito").text
    with pytest.raises(AssertionError):
        console.signed_in("ito", password)
    root.post("/admin/users/ito/enable")
    assert account(console, "ito").disabled_at is None
    console.signed_in("ito", password)
    assert [
        e.actor for e in events(console, "users.disable") + events(console, "users.enable")
    ] == [
        "web:root",
        "web:root",
    ]


def test_an_admin_cannot_lock_themselves_out(console, root):
    refused = root.post("/admin/users/root/roles", {"role": "viewer"}, follow_redirects=True)
    assert "自分自身の管理者ロールは外せません" in refused.text
    disabled = root.post("/admin/users/root/disable", follow_redirects=True)
    assert "自分自身のアカウントは無効にできません" in disabled.text
    user = account(console, "root")
    assert user.roles == ["admin"] and user.disabled_at is None
    assert events(console, "users.roles") == [] and events(console, "users.disable") == []
    assert root.get("/admin/users").status_code == 200  # still signed in, still admin
    # An administrator sees every cohort: limiting one (themselves too) is refused, so no
    # limited person can ever lift their own limit.
    limited = root.post(
        "/admin/users/root/roles", {"role": "admin", "cohort": "sample-1"}, follow_redirects=True
    )
    assert "an administrator sees every cohort" in limited.text
    with console.runtime.sessions() as session:
        assert accounts.get(session, "root").cohorts == []
    # Another administrator may be changed, while one enabled administrator stays.
    console.add_user("second", ["admin"])
    assert root.post("/admin/users/second/disable").status_code == 303
    assert account(console, "second").disabled_at is not None


def test_names_people_typed_stay_text(console, root):
    console.add_user("evil", ["viewer"], display_name=HOSTILE)
    for path in ("/admin/users", "/admin/users/evil"):
        page = root.get(path).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert root.get("/admin/users/nobody").status_code == 404


# -- playbooks --------------------------------------------------------------------------------


def upload(who: SignedIn, name: str, data: bytes, company: str = "unknown"):
    return who.http.post(
        "/admin/playbooks/try",
        data={"csrf": who.csrf, "connector": "defender", "company": company},
        files={"alerts": (name, data, "application/json")},
    )


def test_the_playbooks_in_force_are_listed_and_checked(console, root):
    page = root.get("/admin/playbooks")
    assert page.status_code == 200
    assert "built-in" in page.text and "確認済み" in page.text
    rules = console.runtime.playbook.rules
    assert rules and all(rule.name in page.text for rule in rules)
    assert 'enctype="multipart/form-data"' in page.text


def test_a_dry_run_on_graph_alerts_shows_the_rules_matched_and_what_they_would_do(console, root):
    before = len(events(console, "ticket.open")) + len(events(console, "web.refused"))
    answer = upload(root, GRAPH_ALERTS.name, GRAPH_ALERTS.read_bytes(), "sakura-seisakusho")
    assert answer.status_code == 200, flashes(answer.text)
    text = answer.text
    assert "ルールの判定結果" in text
    assert "Suspicious execution of hidden file" in text
    assert "[sakura-seisakusho]" in text
    [found] = re.findall(r"一致したルール</dt><dd>([^<]+)</dd>", text)
    assert found.strip()
    assert "優先度" in text and "提案される隔離" in text and "エスカレーション先" in text
    assert re.search(r'class="badge P[1-4]"', text)
    # Nothing was stored or sent.
    after = len(events(console, "ticket.open")) + len(events(console, "web.refused"))
    assert after == before


def test_incidents_with_their_alerts_are_tried_alert_by_alert(console, root):
    incidents = PAYLOADS / "graph__list_incidents_expand_alerts.json"
    answer = upload(root, incidents.name, incidents.read_bytes())
    assert answer.status_code == 200
    assert answer.text.count('class="card alert-tried"') == 1
    assert "Suspicious execution of hidden file" in answer.text


def test_a_broken_or_large_upload_is_a_one_line_message(console, root):
    broken = upload(root, "alerts.json", b'{"value": [\n  {"id": 1,,}\n]}')
    assert broken.status_code == 400
    [message] = [m for m in flashes(broken.text) if "alerts.json" in m]
    assert "試せませんでした" in message and "line 2" in message
    large = upload(root, "big.json", b" " * (2 * 1024 * 1024 + 1))
    assert large.status_code == 400 and "big.json は 2 MB を超えています" in large.text
    empty = upload(root, "empty.json", b'{"value": []}')
    assert "empty.json にはアラートがありません" in empty.text
    unmapped = upload(root, "odd.json", json.dumps({"value": [{"id": "x"}]}).encode())
    assert unmapped.status_code == 200 and "試せませんでした: alert 0" in unmapped.text


def test_an_alert_title_in_a_dry_run_stays_text(console, root):
    alerts = json.loads(GRAPH_ALERTS.read_text(encoding="utf-8"))
    alerts["value"][0]["title"] = HOSTILE
    answer = upload(root, "hostile.json", json.dumps(alerts).encode())
    assert answer.status_code == 200
    assert "<script>alert(1)" not in answer.text and "<img src=x" not in answer.text
    assert "&lt;script&gt;" in answer.text


# -- the audit log ----------------------------------------------------------------------------


def seed_events(console: Console, now) -> None:
    """Events on three days: the desk's, a person's, the secretariat's, for two companies."""
    with transaction(console.runtime.sessions) as session:
        tenant = session.scalar(
            select(Tenant.id).join(Company).where(Company.key == "sakura-seisakusho")
        )
        for day in range(3):
            at = now - timedelta(days=day)
            audit.record(
                session,
                at=at,
                actor="cli:sato",
                action="ticket.ack",
                tenant_id=tenant,
                target=f"ticket:{day + 1}",
                detail={"note": f"day {day}", "who": "佐藤"},
            )
            audit.record(
                session, at=at, actor="playbook", action="alert.suppress", tenant_id=tenant
            )
        audit.record(
            session,
            at=now,
            actor="web:root",
            action="users.add",
            tenant_id=None,
            target="user:" + HOSTILE[:40],
            detail={"roles": ["viewer"], "evil": HOSTILE},
        )


def test_the_audit_log_is_newest_first_and_filtered(console, root, now):
    seed_events(console, now)
    page = root.get("/admin/audit").text
    assert page.index("user:&lt;script&gt;") < page.index("ticket:1") < page.index("ticket:3")
    assert "<script>alert(1)" not in page  # detail and target are text
    assert "&#34;evil&#34;: &#34;&lt;script&gt;" in page or "&quot;evil&quot;" in page
    by_actor = root.get("/admin/audit", params={"actor": "cli:sato"}).text
    assert by_actor.count("ticket.ack</code>") == 3 and "alert.suppress</code>" not in by_actor
    assert "該当 3 件" in by_actor
    family = root.get("/admin/audit", params={"action": "ticket"}).text
    assert family.count("ticket.ack</code>") == 3
    by_company = root.get("/admin/audit", params={"company": "sakura-seisakusho"}).text
    assert by_company.count("alert.suppress</code>") == 3
    assert "users.add</code>" not in by_company
    midori = root.get("/admin/audit", params={"company": "midori-shoji"}).text
    assert "ticket.ack</code>" not in midori and "alert.suppress</code>" not in midori
    target = root.get("/admin/audit", params={"target": "ticket:2"}).text
    assert "該当 1 件" in target
    today = to_jst(now).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    one_day = root.get(
        "/admin/audit", params={"from": yesterday, "to": yesterday, "company": "sakura-seisakusho"}
    ).text
    assert "該当 2 件" in one_day and "ticket:2" in one_day and "ticket:1" not in one_day
    since = root.get("/admin/audit", params={"from": yesterday, "actor": "cli:sato"}).text
    assert "該当 2 件" in since


def test_the_audit_log_pages_and_downloads_as_csv_for_excel(console, root, now):
    with transaction(console.runtime.sessions) as session:
        for n in range(60):
            audit.record(
                session,
                at=now - timedelta(minutes=n),
                actor="cli:sato",
                action="ticket.note",
                tenant_id=None,
                target=f"ticket:{n}",
                detail={"n": n},
            )
    first = root.get("/admin/audit", params={"action": "ticket.note"}).text
    assert "1ページ目" in first and "ticket:0<" in first and "ticket:59<" not in first
    assert 'rel="next"' in first
    second = root.get("/admin/audit", params={"action": "ticket.note", "page": 2}).text
    assert "ticket:59<" in second and "ticket:0<" not in second
    answer = root.get("/admin/audit.csv", params={"action": "ticket.note", "target": "ticket:5"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "番号",
        "日時（日本時間）",
        "実行者",
        "代理先",
        "操作",
        "企業",
        "対象",
        "詳細",
    ]
    assert {row[6] for row in rows[1:]} == {"ticket:5", "ticket:50", "ticket:51", "ticket:52"} | {
        f"ticket:5{n}" for n in range(3, 10)
    }
    assert answer.content.count(b"\r\n") == len(rows)


# -- the service's status ---------------------------------------------------------------------


def test_the_status_page_shows_a_parked_tenant_and_what_needs_a_person(console, root, now):
    with console.runtime.sessions() as session:
        tenant = session.scalar(
            select(Tenant.id).join(Company).where(Company.key == "sakura-seisakusho")
        )
    health.park(console.runtime.sessions, tenant, "consent withdrawn: " + HOSTILE, now)
    page = root.get("/admin/status")
    assert page.status_code == 200
    text = page.text
    assert "失敗中・停止中のテナント" in text and "sakura-seisakusho" in text
    assert "parked" in text and "consent withdrawn" in text
    assert "対応が必要" in text and "sakura-seisakusho のテナントは parked です" in text
    assert "<script>alert(1)" not in text
    assert "送信待ち" in text  # the whole service's outbox, for a person who sees every cohort


def test_a_person_limited_to_another_cohort_sees_none_of_its_tenants_or_events(console, now):
    """A viewer of a cohort without sakura: its parked tenant, its problem, its events and the
    whole service's outbox are not shown; an administrator is never limited to cohorts."""
    settings = console.config.settings
    with transaction(console.runtime.sessions) as session:
        course = next(iter(settings.programme.courses))
        cohorts.add(
            session,
            settings.programme,
            key="2027-1",
            name="2027年 第1期",
            course=course,
            capacity=5,
        )
        tenant = session.scalar(
            select(Tenant.id).join(Company).where(Company.key == "sakura-seisakusho")
        )
    health.park(console.runtime.sessions, tenant, "consent withdrawn", now)
    seed_events(console, now)
    viewer = console.signed_in("other", console.add_user("other", ["viewer"], cohorts=["2027-1"]))
    page = viewer.get("/admin/status").text
    assert "sakura-seisakusho" not in page and "consent withdrawn" not in page
    assert "送信待ち" not in page
    with pytest.raises(AccountError, match="an administrator sees every cohort"):
        console.add_user("boss", ["admin"], cohorts=["2027-1"])  # no limited administrator
    everything = console.signed_in("root2", console.add_user("root2", ["admin"]))
    assert "sakura-seisakusho のテナントは parked です" in everything.get("/admin/status").text


def test_the_pages_get_their_stylesheet_and_script(console: Console) -> None:
    """The console's own files are served from an editable install too (linked files)."""
    client = console.client()
    for path in ("/static/console.css", "/static/htmx-2.0.11.min.js"):
        assert client.get(path).status_code == 200, path
