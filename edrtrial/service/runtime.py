"""The runtime: config, store, playbook and connectors, shared by CLI, jobs and scheduler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from threading import Lock

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import Config
from edrtrial.connectors import connector_class
from edrtrial.connectors.base import Connector
from edrtrial.db import ensure_current, existing_engine, make_sessions, transaction
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.desk.policy import DeskPolicy
from edrtrial.models import Company, Tenant
from edrtrial.notify.archive import archive_dir_of
from edrtrial.playbooks.engine import Playbook, default_playbook_paths
from edrtrial.playbooks.live import LivePlaybooks, channel_check
from edrtrial.programme.companies import worked_on_filter
from edrtrial.programme.connection import connection_settings
from edrtrial.programme.tenants import bind_tenant
from edrtrial.timeutil import utcnow

log = logging.getLogger(__name__)


def companies_notice(config: Config) -> str | None:
    """What to say when the config still carries `[[companies]]` blocks (they are ignored)."""
    count = len(config.settings.companies)
    if not count:
        return None
    blocks = "block" if count == 1 else "blocks"
    return (
        f"{config.path.name} carries {count} [[companies]] {blocks}; companies are read from "
        "the store only: import them once with "
        f"`edrtrial companies import-config {config.path.name}`, then remove them from the file"
    )


@dataclass(frozen=True, slots=True)
class TenantRef:
    """Enough to name a tenant without holding a session open."""

    id: int
    company_key: str
    external_id: str
    state: str
    not_before: datetime | None = None


class Runtime:
    """Everything a job needs, built once per process from the config."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        playbook: Playbook | LivePlaybooks,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_sessions(engine)
        self._playbook = playbook
        self.policy = DeskPolicy(
            config.settings.desk,
            config.settings.sla,
            BusinessCalendar.from_config(config.settings.calendar),
            programme=config.settings.programme,
            archive_dir=archive_dir_of(config),
        )
        self.clock = clock
        self._connectors: dict[int, Connector] = {}
        self._tenant_locks: dict[int, Lock] = {}
        self._lock = Lock()

    @classmethod
    def open(
        cls,
        config: Config,
        clock: Callable[[], datetime] = utcnow,
        *,
        notice: Callable[[str], None] | None = None,
    ) -> Runtime:
        """Open the store (refusing an unmigrated one) and load playbooks.

        Companies are read from the store only: a config still carrying `[[companies]]`
        blocks is said so once, to `notice` (the CLI's stderr), else as a WARNING log line.
        """
        engine = existing_engine(config.database_url)
        ensure_current(engine)
        if said := companies_notice(config):
            (notice or log.warning)(said)
        paths = [config.resolve(p) for p in config.settings.playbooks] or default_playbook_paths()
        channels = [c.name for c in config.settings.desk.escalation_channels()]
        return cls(config, engine, LivePlaybooks(paths, check=channel_check(channels)), clock)

    @property
    def playbook(self) -> Playbook:
        """The playbook in force (with live files: the last good load)."""
        found = self._playbook
        return found.current if isinstance(found, LivePlaybooks) else found

    def refresh_playbooks(self) -> str | None:
        """Pick up edited playbook files; a broken edit is logged and the old rules stay."""
        found = self._playbook
        return found.refresh() if isinstance(found, LivePlaybooks) else None

    def tenants(self, company_key: str | None = None) -> list[TenantRef]:
        """The tenants the service works on (optionally one company's), in company order:
        those of companies in a polled journey state whose credentials were not dropped."""
        with self.sessions() as session:
            query = (
                select(Tenant, Company.key)
                .join(Company, Tenant.company_id == Company.id)
                .where(*worked_on_filter())
                .order_by(Company.key)
            )
            if company_key:
                query = query.where(Company.key == company_key)
            return [
                TenantRef(t.id, key, t.external_id, t.state, t.not_before)
                for t, key in session.execute(query)
            ]

    def connector(self, tenant: TenantRef) -> Connector:
        """The tenant's connector, kept for the process so its token cache is reused.

        Built from the programme's app registration (or the tenant's own connection) and
        given out only once the tenant it talks to is bound to this company (`bind_tenant`):
        a domain resolved to a tenant another company holds is refused before anything is
        read. Resolving may call the network, so it runs outside the runtime's lock.
        """
        with self._lock:
            found = self._connectors.get(tenant.id)
        if found is not None:
            return found
        with self.sessions() as session:
            settings = connection_settings(
                self.config.settings.programme, session.get_one(Tenant, tenant.id)
            )
        cls = connector_class(str(settings.get("connector", "")))
        built = cls.from_settings(settings, self.config.base_dir)
        try:
            configured = str(settings.get("tenant_id", tenant.external_id))
            with transaction(self.sessions) as session:
                row = session.get_one(Tenant, tenant.id)
                bind_tenant(session, row, configured, built.tenant_id)
        except BaseException:
            built.close()
            raise
        with self._lock:
            found = self._connectors.setdefault(tenant.id, built)
        if found is not built:  # another thread built one meanwhile
            built.close()
        return found

    def tenant_lock(self, tenant_id: int) -> Lock:
        """One tenant's work (poll, inventory) runs one job at a time in this process."""
        with self._lock:
            return self._tenant_locks.setdefault(tenant_id, Lock())

    def forget_connector(self, tenant_id: int) -> None:
        """Drop a tenant's connector, so fixed credentials are read afresh next time."""
        with self._lock:
            connector = self._connectors.pop(tenant_id, None)
        if connector is not None:
            connector.close()

    def close(self) -> None:
        """Close connectors and the engine."""
        with self._lock:
            for connector in self._connectors.values():
                connector.close()
            self._connectors.clear()
        self.engine.dispose()
