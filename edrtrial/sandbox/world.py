"""The sandbox's whole state behind one lock: tenants, tokens, budgets and settings.

The HTTP app and the ticker thread both call in; every public method takes the lock, so
each request sees and leaves a consistent world. Deterministic for a seed; the times are
real UTC from `clock`. The class is long because it is the one locked entry point: its
methods only take the lock and hand over to graph_data, mde_data, injection and generate.
"""

from __future__ import annotations

import hmac
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from edrtrial.sandbox import graph_data, mde_data
from edrtrial.sandbox.actions import OUTCOMES
from edrtrial.sandbox.auth import (
    ALL_PERMISSIONS,
    APP_PERMISSIONS,
    GRAPH,
    MDE,
    SCOPES,
    TOKEN_LIFETIME,
    EntraError,
    TokenStore,
    missing_roles,
)
from edrtrial.sandbox.faults import ActionFault, ApiError
from edrtrial.sandbox.generate import populate, step
from edrtrial.sandbox.graph_data import Page, PageKey
from edrtrial.sandbox.injection import inject_alerts, onboard_devices
from edrtrial.sandbox.odata import Clause
from edrtrial.sandbox.ratelimit import Budgets, RateLimiter
from edrtrial.sandbox.samples import SAMPLE_CLIENT_ID, SampleTenant, sample_tenants
from edrtrial.sandbox.tenant import TenantState, changed
from edrtrial.timeutil import utcnow

_UNAUTHORIZED = {GRAPH: "InvalidAuthenticationToken", MDE: "Unauthorized"}


class SandboxWorld:
    """In-memory tenants that the sandbox's Graph, MDE and login endpoints serve."""

    def __init__(
        self,
        seed: int = 7,
        tenants: int = 3,
        alert_interval_seconds: float = 30,
        backlog_alerts: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if alert_interval_seconds <= 0:
            raise ValueError("alert_interval_seconds must be positive")
        if backlog_alerts is not None and backlog_alerts < 0:
            raise ValueError("backlog_alerts must not be negative")
        self.seed = seed
        self.client_id = SAMPLE_CLIENT_ID
        self._clock = clock
        self._lock = threading.RLock()
        self._interval = timedelta(seconds=alert_interval_seconds)
        self._tokens = TokenStore()
        self._limiter = RateLimiter()
        self._secrets: dict[str, str] = {}
        self._app_secret = ""
        self._issued_for: dict[str, str] = {}  # tenant → the tenant its tokens are issued for
        # tenant → the application permissions its administrator granted the app
        self._granted: dict[str, set[str]] = {}
        self._requests: dict[str, Counter[str]] = {}
        self._latency = 0.0
        self._action_seconds = 6.0
        self._action_outcome = "Succeeded"
        self._action_fault = ActionFault()
        now = clock()
        self._tenants: dict[str, TenantState] = {}
        for index, info in enumerate(sample_tenants(tenants)):
            state = TenantState(info, seed)
            populate(state, index, now, backlog_alerts)
            self._tenants[info.tenant_id] = state
            self._granted[info.tenant_id] = set(ALL_PERMISSIONS)

    # -- lookups -----------------------------------------------------------------------------

    @property
    def tenants(self) -> list[SampleTenant]:
        """The sample tenants, in order (the fixed three first)."""
        return [state.info for state in self._tenants.values()]

    def now(self) -> datetime:
        """The world's clock."""
        return self._clock()

    def _tenant(self, tenant_id: str) -> TenantState:
        state = self._tenants.get(tenant_id.lower())
        if state is None:
            raise LookupError(f"no sandbox tenant {tenant_id}")
        return state

    def find_tenant(self, name: str) -> str | None:
        """The tenant id for a login path segment: a tenant id or its domain name."""
        lowered = name.lower()
        if lowered in self._tenants:
            return lowered
        return next((t for t, s in self._tenants.items() if s.info.domain == lowered), None)

    # -- login -------------------------------------------------------------------------------

    def set_client_secrets(self, secrets: Mapping[str, str]) -> None:
        """Install each tenant's client secret (the server reads them from the state dir)."""
        with self._lock:
            self._secrets.update({tenant.lower(): value for tenant, value in secrets.items()})

    def set_app_secret(self, secret: str) -> None:
        """Install the app's one client secret, good in every tenant."""
        with self._lock:
            self._app_secret = secret

    def _secret_matches(self, tenant_id: str, given: str) -> bool:
        """The app's secret, or this tenant's own, compared in constant time."""
        return any(
            expected and hmac.compare_digest(given.encode(), expected.encode())
            for expected in (self._app_secret, self._secrets.get(tenant_id, ""))
        )

    def issue_token(self, tenant: str, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer a client-credentials token request, or raise the EntraError Entra would."""
        with self._lock:
            tenant_id = self.find_tenant(tenant)
            if tenant_id is None:
                raise EntraError("unknown_tenant", tenant=tenant)
            self._count(tenant_id, "login:token")
            state = self._tenants[tenant_id]
            grant_type = form.get("grant_type")
            if not grant_type:
                raise EntraError("missing_parameter", parameter="grant_type")
            if grant_type != "client_credentials":
                raise EntraError("bad_grant_type", grant_type=grant_type)
            client_id = form.get("client_id", "")
            if not client_id:
                raise EntraError("missing_parameter", parameter="client_id")
            if client_id.lower() != self.client_id:
                raise EntraError("unknown_client", client_id=client_id, tenant_name=state.info.name)
            secret = form.get("client_secret", "")
            if not secret:
                raise EntraError("missing_secret")
            if not self._secret_matches(tenant_id, secret):
                raise EntraError("bad_secret", client_id=client_id)
            audience = self._audience(form.get("scope", ""), state)
            if not state.consent:
                raise EntraError("no_consent", client_id=client_id)
            issued_for = self._issued_for.get(tenant_id, tenant_id)
            roles = frozenset(self._granted[tenant_id] & set(APP_PERMISSIONS[audience]))
            token = self._tokens.issue(issued_for, audience, client_id, self._clock(), roles)
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        }

    @staticmethod
    def _audience(scope: str, state: TenantState) -> str:
        scopes = scope.split()
        if not scopes:
            raise EntraError("missing_parameter", parameter="scope")
        if len(scopes) > 1 or not scopes[0].endswith("/.default"):
            raise EntraError("scope_not_default", scope=scope)
        audience = SCOPES.get(scopes[0].lower())
        if audience is None:
            raise EntraError(
                "unknown_scope",
                resource=scopes[0][: -len("/.default")],
                tenant_name=state.info.name,
            )
        return audience

    def authenticate(
        self, authorization: str | None, audience: str, required: tuple[str, ...] = ()
    ) -> tuple[str, str]:
        """The (tenant id, client id) of a live bearer token for `audience`, else a 401; a
        403 naming the roles when the token carries none of the `required` permissions."""
        code = _UNAUTHORIZED[audience]
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, code, "Access token is empty.")
        with self._lock:
            grant = self._tokens.lookup(token.strip())
            if grant is None:
                raise ApiError(401, code, "Access token validation failure.")
            if grant.expires_at <= self._clock():
                raise ApiError(401, code, "Lifetime validation failed, the token is expired.")
            if grant.audience != audience:
                raise ApiError(401, code, "Access token validation failure. Invalid audience.")
            if (missing := missing_roles(grant.roles, required)) is not None:
                self._count(grant.tenant_id, f"{audience}:forbidden")
                raise ApiError(403, "Forbidden", missing)
            return grant.tenant_id, grant.client_id

    def charge(self, tenant_id: str, api: str, endpoint: str | None = None) -> int | None:
        """Count an API call against the tenant's budget; the Retry-After seconds if over.

        The request is also counted under `endpoint` (else `api`), throttled or not.
        """
        with self._lock:
            self._count(tenant_id, endpoint or api)
            return self._limiter.charge(tenant_id, api, self._clock())

    # -- request counts (benchmarks, tests) ----------------------------------------------------

    def _count(self, tenant_id: str, api: str) -> None:
        self._requests.setdefault(tenant_id.lower(), Counter())[api] += 1

    def count_request(self, tenant_id: str, api: str) -> None:
        """Count a request that is not charged to a budget (sign-in metadata)."""
        with self._lock:
            self._count(tenant_id, api)

    def request_counts(self, tenant_id: str) -> dict[str, int]:
        """Requests per API since the start or the last reset ("graph:list_alerts", …).

        Only requests that name a known tenant count (a bad token names none).
        """
        with self._lock:
            return dict(self._requests.get(tenant_id.lower(), {}))

    def reset_request_counts(self) -> None:
        """Start counting every tenant's requests from zero."""
        with self._lock:
            self._requests.clear()

    # -- Graph ---------------------------------------------------------------------------------

    def list_alerts(
        self, tenant_id: str, clauses: list[Clause], after: PageKey | None, skip: int, top: int
    ) -> Page:
        """A page of alerts_v2 for a tenant."""
        with self._lock:
            return graph_data.list_alerts(self._tenant(tenant_id), clauses, after, skip, top)

    def list_incidents(
        self,
        tenant_id: str,
        clauses: list[Clause],
        after: PageKey | None,
        skip: int,
        top: int,
        expand: bool = False,
    ) -> Page:
        """A page of incidents for a tenant."""
        with self._lock:
            return graph_data.list_incidents(
                self._tenant(tenant_id), clauses, after, skip, top, expand
            )

    def get_alert(self, tenant_id: str, alert_id: str) -> dict[str, Any]:
        """One alert of a tenant, or ApiError 404."""
        with self._lock:
            return graph_data.get_alert(self._tenant(tenant_id), alert_id)

    def get_incident(
        self, tenant_id: str, incident_id: str, expand: bool = False
    ) -> dict[str, Any]:
        """One incident of a tenant, or ApiError 404."""
        with self._lock:
            return graph_data.get_incident(self._tenant(tenant_id), incident_id, expand)

    def update_alert(self, tenant_id: str, alert_id: str, changes: Any) -> dict[str, Any]:
        """PATCH an alert as Graph does; also how tests change an alert mid-paging."""
        with self._lock:
            return graph_data.update_alert(
                self._tenant(tenant_id), alert_id, changes, self._clock()
            )

    def update_incident(self, tenant_id: str, incident_id: str, changes: Any) -> dict[str, Any]:
        """PATCH an incident as Graph does."""
        with self._lock:
            return graph_data.update_incident(
                self._tenant(tenant_id), incident_id, changes, self._clock()
            )

    # -- MDE -----------------------------------------------------------------------------------

    def list_machines(
        self, tenant_id: str, clauses: list[Clause], skip: int, top: int
    ) -> list[dict[str, Any]]:
        """The tenant's machines (ApiError 404 when it has none)."""
        with self._lock:
            return mde_data.list_machines(self._tenant(tenant_id), clauses, skip, top)

    def get_machine(self, tenant_id: str, machine_id: str) -> dict[str, Any]:
        """One machine by id or DNS name."""
        with self._lock:
            return mde_data.get_machine(self._tenant(tenant_id), machine_id)

    def start_action(
        self, tenant_id: str, machine_id: str, verb: str, body: Any, requestor: str
    ) -> dict[str, Any]:
        """isolate / unisolate / runAntiVirusScan / offboard a machine."""
        with self._lock:
            return mde_data.start_action(
                self._tenant(tenant_id),
                machine_id,
                verb,
                body,
                requestor,
                self._clock(),
                self._action_seconds,
                self._action_outcome,
            )

    def list_actions(
        self, tenant_id: str, clauses: list[Clause], skip: int, top: int
    ) -> list[dict[str, Any]]:
        """The tenant's machine actions, newest first."""
        with self._lock:
            return mde_data.list_actions(self._tenant(tenant_id), clauses, skip, top, self._clock())

    def get_action(self, tenant_id: str, action_id: str) -> dict[str, Any]:
        """One machine action."""
        with self._lock:
            return mde_data.get_action(self._tenant(tenant_id), action_id, self._clock())

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Let time pass: new alerts every interval, status changes, actions finishing."""
        with self._lock:
            moment = now or self._clock()
            return sum(step(state, moment, self._interval) for state in self._tenants.values())

    # -- controls ------------------------------------------------------------------------------

    def add_alerts(
        self,
        tenant_id: str,
        kind: str,
        count: int = 1,
        *,
        incident_id: str | None = None,
        device_id: str | None = None,
        severity: str | None = None,
        text: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Raise `count` alerts of a kind now. incident_id: None = one new incident per alert,
        "new" = one new incident for all of them, or an existing incident's id; `text`
        replaces the kind's title, description, file name, command line or URL."""
        with self._lock:
            return inject_alerts(
                self._tenant(tenant_id),
                kind,
                count,
                self._clock(),
                incident_id=incident_id,
                device_id=device_id,
                severity=severity,
                text=text,
            )

    def rename_device(
        self, tenant_id: str, device_id: str, dns_name: str, user: str | None = None
    ) -> None:
        """Give a device another name (and signed-in user): whatever its owner typed."""
        with self._lock:
            device = self._tenant(tenant_id).find_device(device_id)
            if device is None:
                raise LookupError(f"no device {device_id} in tenant {tenant_id}")
            device.dns_name = dns_name
            if user is not None:
                device.user = user

    def add_devices(
        self,
        tenant_id: str,
        count: int = 1,
        platform: str = "Windows11",
        detection_test_alert: bool = True,
    ) -> list[str]:
        """Onboard new devices now; Windows ones run the detection test right away."""
        with self._lock:
            return onboard_devices(
                self._tenant(tenant_id), count, platform, self._clock(), detection_test_alert
            )

    def clear_tenant(self, tenant_id: str) -> None:
        """Empty a tenant, as one freshly provisioned with no device onboarded yet."""
        with self._lock:
            state = self._tenant(tenant_id)
            state.devices.clear()
            state.alerts.clear()
            state.incidents.clear()
            state.actions.clear()

    def set_malformed(self, tenant_id: str, alert_id: str, malformed: bool = True) -> None:
        """Serve an alert without its timestamps (to train on, and test, quarantine)."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            alert = tenant.alerts[alert_id]
            alert.malformed = malformed
            alert.last_update = changed(alert.last_update, self._clock())

    def set_consent(self, tenant_id: str, granted: bool) -> None:
        """Revoke or restore admin consent; revoking also ends the tenant's live tokens now
        (Entra would let them run out within the hour). Consenting grants every permission
        the app requests, as an administrator's consent does."""
        with self._lock:
            state = self._tenant(tenant_id)
            state.consent = granted
            if granted:
                self._granted[state.tenant_id] = set(ALL_PERMISSIONS)
            else:
                self._tokens.expire(state.tenant_id, self._clock())

    def set_permission(self, tenant_id: str, permission: str, granted: bool) -> list[str]:
        """Grant or withdraw one application permission in a tenant (as its administrator
        would in Enterprise applications > Permissions); the tenant's live tokens end now, so
        the next one carries the new `roles`. Returns the permissions now granted."""
        if permission not in ALL_PERMISSIONS:
            raise ValueError(
                f"unknown permission {permission!r}; one of {', '.join(sorted(ALL_PERMISSIONS))}"
            )
        with self._lock:
            state = self._tenant(tenant_id)
            roles = self._granted[state.tenant_id]
            if granted:
                roles.add(permission)
            else:
                roles.discard(permission)
            self._tokens.expire(state.tenant_id, self._clock())
            return sorted(roles)

    def permissions(self, tenant_id: str) -> list[str]:
        """The application permissions granted in a tenant."""
        with self._lock:
            return sorted(self._granted[self._tenant(tenant_id).tenant_id])

    def issue_tokens_for(self, tenant_id: str, other: str | None) -> None:
        """Answer sign-ins at `tenant_id`'s authority with tokens of tenant `other` (None:
        its own again), as a misrouted or hostile sign-in service would; such a token reads
        `other`'s data, so a client must check the token's `tid` before using it."""
        with self._lock:
            state = self._tenant(tenant_id)
            if other is None:
                self._issued_for.pop(state.tenant_id, None)
            else:
                self._issued_for[state.tenant_id] = self._tenant(other).tenant_id

    def expire_tokens(self, tenant_id: str | None = None) -> int:
        """End live tokens of one tenant (or all) now, to test re-authentication."""
        with self._lock:
            if tenant_id is not None:
                tenant_id = self._tenant(tenant_id).tenant_id
            return self._tokens.expire(tenant_id, self._clock())

    @property
    def latency_seconds(self) -> float:
        """Delay added to every API response."""
        return self._latency

    def set_latency(self, seconds: float) -> None:
        """Slow every API response down by `seconds`."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = float(seconds)

    @property
    def budgets(self) -> Budgets:
        """The current call budgets."""
        return self._limiter.budgets

    def set_budgets(self, budgets: Budgets) -> None:
        """Change the call budgets (None = unlimited); calls already counted stay counted."""
        for value in (budgets.graph_per_minute, budgets.mde_per_minute, budgets.mde_per_hour):
            if value is not None and value < 1:
                raise ValueError("a budget must be at least 1 call (or None for unlimited)")
        with self._lock:
            self._limiter.budgets = budgets

    def update_budgets(self, **changes: int | None) -> Budgets:
        """Change some budgets, keep the others."""
        budgets = replace(self.budgets, **changes)
        self.set_budgets(budgets)
        return budgets

    @property
    def action_seconds(self) -> float:
        """How long machine actions take to finish."""
        return self._action_seconds

    def set_action_seconds(self, seconds: float) -> None:
        """How long new machine actions take (0 = they succeed at once)."""
        if seconds < 0:
            raise ValueError("action_seconds must not be negative")
        with self._lock:
            self._action_seconds = float(seconds)

    @property
    def action_outcome(self) -> str:
        """How new machine actions end."""
        return self._action_outcome

    def set_action_outcome(self, outcome: str) -> None:
        """Make new machine actions end Succeeded, Failed or TimeOut."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        with self._lock:
            self._action_outcome = outcome

    @property
    def action_fault(self) -> ActionFault:
        """The fault action requests suffer after their action is recorded."""
        with self._lock:
            return ActionFault(self._action_fault.mode, self._action_fault.repeat)

    def set_action_fault(self, mode: str, repeat: str = "once") -> None:
        """Make the next action request (or every one) fail after recording its action."""
        fault = ActionFault(mode, repeat)
        with self._lock:
            self._action_fault = fault

    def take_action_fault(self) -> str:
        """The fault for the action request just recorded (a `once` fault is used up)."""
        with self._lock:
            return self._action_fault.take()

    # -- reading state (tests, operators) ------------------------------------------------------

    def alert_count(self, tenant_id: str) -> int:
        """How many alerts the tenant has."""
        with self._lock:
            return len(self._tenant(tenant_id).alerts)

    def alerts(self, tenant_id: str) -> list[dict[str, Any]]:
        """All the tenant's alerts as Graph JSON, oldest update first."""
        with self._lock:
            return graph_data.list_alerts(self._tenant(tenant_id), [], None, 0, 10**9).items

    def device_ids(self, tenant_id: str, platform: str | None = None) -> list[str]:
        """The tenant's device ids, optionally of one osPlatform."""
        with self._lock:
            devices = self._tenant(tenant_id).devices.values()
            return [d.id for d in devices if platform is None or d.platform == platform]

    def is_isolated(self, tenant_id: str, device_id: str) -> bool:
        """Whether a finished isolation currently holds the device."""
        with self._lock:
            device = self._tenant(tenant_id).find_device(device_id)
            if device is None:
                raise LookupError(f"no device {device_id} in tenant {tenant_id}")
            return device.isolated

    def action_counts(self, tenant_id: str) -> dict[str, dict[str, int]]:
        """Machine actions requested per device id and type."""
        with self._lock:
            return self._tenant(tenant_id).action_table()

    def action_ids(self, tenant_id: str, device_id: str) -> list[str]:
        """The ids of the device's machine actions, oldest first."""
        with self._lock:
            actions = self._tenant(tenant_id).actions.values()
            return [
                a.id for a in sorted(actions, key=lambda a: a.created) if a.device_id == device_id
            ]

    def summary(self) -> dict[str, Any]:
        """Everything an operator or a test wants to know at a glance, JSON-ready."""
        with self._lock:
            now = self._clock()
            for state in self._tenants.values():
                state.advance_actions(now)
            return {
                "now": now.isoformat(),
                "client_id": self.client_id,
                "settings": self._settings(),
                "tenants": [
                    {**s.summary(), "calls_last_minute": self._limiter.usage(s.tenant_id, now)}
                    for s in self._tenants.values()
                ],
            }

    def settings(self) -> dict[str, Any]:
        """Latency, budgets and action behaviour, JSON-ready."""
        with self._lock:
            return self._settings()

    def _settings(self) -> dict[str, Any]:
        budgets = self._limiter.budgets
        return {
            "latency_seconds": self._latency,
            "graph_per_minute": budgets.graph_per_minute,
            "mde_per_minute": budgets.mde_per_minute,
            "mde_per_hour": budgets.mde_per_hour,
            "action_seconds": self._action_seconds,
            "action_outcome": self._action_outcome,
            "action_fault": self._action_fault.mode,
            "action_fault_repeat": self._action_fault.repeat,
            "alert_interval_seconds": self._interval.total_seconds(),
        }
