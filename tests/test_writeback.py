"""Write-back keeps its state and the EDR's reason for a refusal in separate columns."""

from __future__ import annotations

from sqlalchemy import select

from edrtrial.connectors.base import AlertUpdate, Capability
from edrtrial.db import transaction
from edrtrial.devices import writeback
from edrtrial.errors import PermanentError, TransientError
from edrtrial.models import Alert
from edrtrial.states import WriteBackState

from conftest import add_tenant
from fakes import FakeConnector


class Refusing(FakeConnector):
    capabilities = frozenset({*FakeConnector.capabilities, Capability.WRITE_BACK})

    def __init__(self, errors: dict[str, Exception]) -> None:
        super().__init__(tenant_id="t-acme")
        self.errors = errors

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        if source_id in self.errors:
            raise self.errors[source_id]


def test_a_refusal_is_failed_with_its_reason_apart_and_a_throttle_waits(sessions):
    tenant_id = add_tenant(sessions, "acme")
    with transaction(sessions) as session:
        for n in (1, 2, 3):
            session.add(
                Alert(
                    tenant_id=tenant_id, source="defender", source_id=f"a{n}", write_back="pending"
                )
            )
    connector = Refusing(
        {
            "a1": PermanentError("403 Forbidden: no SecurityAlert.ReadWrite.All"),
            "a3": TransientError("429"),
        }
    )
    result = writeback.write_back_pending(sessions, tenant_id, connector)
    assert (result.written, result.failed, result.deferred) == (1, 1, 1)
    with sessions() as session:
        rows = {
            a.source_id: (a.write_back, a.write_back_error) for a in session.scalars(select(Alert))
        }
    assert rows == {
        "a1": (WriteBackState.FAILED, "403 Forbidden: no SecurityAlert.ReadWrite.All"),
        "a2": (WriteBackState.DONE, ""),
        "a3": (WriteBackState.PENDING, ""),
    }
