"""Ticket, device action, outbox message and tenant states are written only by their machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from state_writes import EXEMPT, GUARDS, Guard, find_writes, shipped_sources


def test_the_shipped_source_writes_states_only_through_their_machines():
    findings, used = find_writes(shipped_sources())
    assert [str(f) for f in findings] == []
    assert set(EXEMPT) - used == set(), "an exemption matches nothing any more: remove it"


PLANTED = {
    "attribute": "action.status = 'sending'\n",
    "chained assignment": "a = action.status = 'sending'\n",
    "augmented": "action.status += '!'\n",
    "annotated": "action.status: str = 'sending'\n",
    "tuple target": "action.status, action.updated_at = 'sending', now\n",
    "nested list target": "[(x, action.status), y] = [(1, 'sent'), 2]\n",
    "starred target": "first, *msg.status = ['a', 'b']\n",
    "for target": "for tenant.state in ('active', 'parked'):\n    pass\n",
    "with target": "with opener() as tenant.state:\n    pass\n",
    "setattr": "setattr(tenant, 'state', 'parked')\n",
    "update values keyword": (
        "session.execute(update(ResponseAction).where(ResponseAction.id == 1)"
        ".values(status='sending'))\n"
    ),
    "update values dict": "stmt = sa.update(models.OutboxMessage).values({'status': 'sent'})\n",
    "update values column key": "stmt = update(Tenant).values({Tenant.state: 'parked'})\n",
    "update values ** literal": "stmt = update(Tenant).values(**{'state': 'parked'})\n",
    "update values ** computed": "stmt = update(Tenant).values(**changes)\n",
    "update ordered_values": "stmt = update(Tenant).ordered_values(('state', 'parked'))\n",
    "update executemany": "session.execute(update(ResponseAction), [{'id': 1, 'status': 'x'}])\n",
    "table update": "stmt = Tenant.__table__.update().values(state='parked')\n",
    "legacy query update": "session.query(Tenant).filter_by(id=1).update({'state': 'parked'})\n",
    "claim": "claim(session, ResponseAction, 1, 'status', 'planned', status='sending')\n",
    "claim by keyword": "db.claim(session, OutboxMessage, 1, column='status', expected='x')\n",
    "a second machine": "M = Machine('tenant', Tenant, 'state', {})\n",
    "inside a function and class": (
        "class Helper:\n    def go(self, tenant):\n        tenant.state = 'parked'\n"
    ),
    "the model's own method": "class Tenant:\n    def park(self):\n        self.state = 'parked'\n",
    "a ticket's state from a variable": "target = 'closed'\nt = ticket\nt.state = target\n",
    "a ticket's state through a relationship": "alert.ticket.state = 'new'\n",
    "a ticket's state by update": (
        "session.execute(update(Ticket).where(Ticket.id == 1).values(state=target))\n"
    ),
    "a ticket's state by claim": "claim(session, Ticket, 1, 'state', 'resolved', state='closed')\n",
    "a second ticket machine": "TICKETS = Machine('ticket', Ticket, 'state', {})\n",
}


def _scratch(root: Path, relative: str, text: str) -> list[str]:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return [str(f) for f in find_writes(shipped_sources(root))[0]]


@pytest.mark.parametrize("form", list(PLANTED))
def test_each_form_of_write_planted_in_a_scratch_module_is_caught(tmp_path, form):
    found = _scratch(tmp_path, "edrtrial/scratch.py", PLANTED[form])
    assert found and all(f.startswith("edrtrial/scratch.py:") for f in found), found


@pytest.mark.parametrize(
    "text",
    [
        "self.status = status\n",  # an HTTP error's own attribute
        "class ApiError(Exception):\n    def __init__(self, s):\n        self.status = s\n",
        "claim(session, ResponseAction, 1, 'detail', '', detail='x')\n",
        "stmt = update(ResponseAction).values(detail='x')\n",
        "stmt = update(Alert).values(status='resolved')\n",
        "row = ResponseAction(status='planned')\n",  # a new row starts somewhere
        "setattr(row, key, value)\n",  # a computed name cannot be told
        "status = action.status\n",
        "DEVICE_ACTIONS.move(session, action, 'claim')\n",
    ],
)
def test_reads_other_columns_and_machine_steps_are_not_writes(tmp_path, text):
    assert _scratch(tmp_path, "edrtrial/scratch.py", text) == []


def test_the_sandbox_and_a_states_module_may_write(tmp_path):
    assert _scratch(tmp_path, "edrtrial/sandbox/actions.py", "action.status = 'Succeeded'\n") == []
    # A states module may write its own column (another model's column of the same name
    # is still refused there: attribute stores cannot be told apart by model).
    found = _scratch(tmp_path, "edrtrial/devices/states.py", "action.status = 'x'\n")
    assert not any("ResponseAction.status" in f for f in found), found
    assert _scratch(tmp_path, "reports/scratch.py", "tenant.state = 'parked'\n") != []


def test_a_new_guard_extends_the_scan():
    incident = Guard("Incident", "status", frozenset({"edrtrial/ingest/records.py"}))
    source = [("edrtrial/desk/x.py", "claim(session, Incident, 1, 'status', 'new')\n")]
    assert find_writes(source, GUARDS)[0] == []
    assert [f.what for f in find_writes(source, (*GUARDS, incident))[0]] == ["Incident.status"]
