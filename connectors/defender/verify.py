"""Whether a consented tenant gives the service everything it needs (`verify_access`).

Each API is signed in to once; its token's `roles` claim lists the application permissions
the tenant granted the programme's app. Each endpoint the service polls is read once with
`$top=1`; the actions it cannot try without harm (isolating or offboarding a PC, changing an
alert) are checked in `roles` only. Every failure is told in words an operator can act on,
with who must act (`Remedy`): the programme (its app registration) or the company (its
administrator's consent, its Defender set-up).
"""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.connectors.base import AccessCheck, Remedy
from edrtrial.connectors.defender.auth import TokenProvider, aadsts_code, token_claims
from edrtrial.connectors.defender.client import Api, DefenderClient
from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.errors import AuthError, ConnectorError, ResourceNotFound, TransientError

_LABELS = {Api.GRAPH: "Microsoft Graph", Api.MDE: "Defender for Endpoint API"}
_READ_ALERTS = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
_READ_INCIDENTS = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
_READ_MACHINES = ("Machine.Read.All", "Machine.ReadWrite.All")
_CONSENT_CODES = frozenset({65001, 650051})
_APP_CODES = frozenset({7000215, 7000222, 700027, 7000112})


@dataclass(frozen=True, slots=True)
class Probe:
    """The smallest read of one endpoint the service polls, and the permissions it needs."""

    api: Api
    label: str
    path: str
    permissions: tuple[str, ...]  # any one lets the read through; the first is the least


@dataclass(frozen=True, slots=True)
class Role:
    """A permission an action needs that cannot be tried without harm."""

    api: Api
    permission: str
    why: str


def probes(alerts: str, incidents: str, machines: str, actions: str) -> tuple[Probe, ...]:
    """The reads of the endpoints at these paths (the connector's own)."""
    return (
        Probe(Api.GRAPH, "Graph alerts_v2", alerts, _READ_ALERTS),
        Probe(Api.GRAPH, "Graph incidents", incidents, _READ_INCIDENTS),
        Probe(Api.MDE, "MDE machines", machines, _READ_MACHINES),
        Probe(Api.MDE, "MDE machine actions", actions, _READ_MACHINES),
    )


def roles_needed(settings: DefenderSettings) -> tuple[Role, ...]:
    """The actions' permissions: isolation and offboarding always, alert write-back if on."""
    roles = [
        Role(Api.MDE, "Machine.Isolate", "isolate and release a PC"),
        Role(Api.MDE, "Machine.Offboard", "uninstall Defender from PCs at the trial's end"),
    ]
    if settings.write_back:
        roles.append(Role(Api.GRAPH, "SecurityAlert.ReadWrite.All", "write the desk's verdicts"))
    return tuple(roles)


def verify_access(
    settings: DefenderSettings,
    client: DefenderClient,
    tokens: TokenProvider,
    reads: tuple[Probe, ...],
) -> list[AccessCheck]:
    """Every check of the tenant, in order: per API its sign-in, its reads, its roles."""
    checks: list[AccessCheck] = []
    scopes = {Api.GRAPH: settings.graph_scope, Api.MDE: settings.mde_scope}
    for api in (Api.GRAPH, Api.MDE):
        name = f"sign-in to {_LABELS[api]}"
        try:
            roles = _granted(tokens.token(scopes[api]))
        except ConnectorError as err:
            failed = _sign_in_failure(name, err, settings)
            checks.append(failed)
            checks.extend(
                AccessCheck(item, False, "not tried: no sign-in", remedy=failed.remedy)
                for item in _names(api, reads, settings)
            )
            continue
        checks.append(AccessCheck(name, True, f"granted: {', '.join(sorted(roles)) or 'none'}"))
        checks.extend(_read(client, probe, settings) for probe in reads if probe.api is api)
        for role in roles_needed(settings):
            if role.api is api:
                checks.append(_role(role, roles, settings))
    return checks


def _names(api: Api, reads: tuple[Probe, ...], settings: DefenderSettings) -> list[str]:
    return [_probe_name(p) for p in reads if p.api is api] + [
        _role_name(r) for r in roles_needed(settings) if r.api is api
    ]


def _probe_name(probe: Probe) -> str:
    return f"{probe.label} ({probe.permissions[0]})"


def _role_name(role: Role) -> str:
    return f"{role.permission} ({role.why})"


def _granted(access_token: str) -> frozenset[str]:
    roles = token_claims(access_token).get("roles")
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(r for r in roles if isinstance(r, str))


def _consent_again(settings: DefenderSettings) -> str:
    return (
        f"a global administrator of the company opens the programme's consent URL again "
        f"(app {settings.client_id}), so the tenant grants what the app now asks"
    )


def _sign_in_failure(name: str, err: ConnectorError, settings: DefenderSettings) -> AccessCheck:
    tenant, app = settings.tenant_id, settings.client_id
    if isinstance(err, TransientError):
        return AccessCheck(
            name,
            False,
            f"no answer from {settings.authority_host}: {err}",
            "Nothing is known yet: check this server's network, then verify again.",
            Remedy.NETWORK,
        )
    action = err.operator_action if isinstance(err, AuthError) else ""
    code = aadsts_code(str(err))
    if code in _CONSENT_CODES:
        reason = f"AADSTS{code}: no admin consent for the programme's app {app} in tenant {tenant}"
        return AccessCheck(name, False, reason, _consent_action(), Remedy.CONSENT)
    if code == 700016:
        reason = (
            f"AADSTS700016: the programme's app {app} is not in tenant {tenant}: consent was "
            "not given there, or the tenant id recorded is another organisation's"
        )
        return AccessCheck(name, False, reason, _consent_action(), Remedy.CONSENT)
    if code == 500011:
        reason = (
            f"AADSTS500011: tenant {tenant} has no service principal for {_LABELS_BY_NAME[name]}"
            " (Defender for Business not provisioned yet?)"
        )
        return AccessCheck(name, False, reason, action, Remedy.PROVISIONING)
    if code == 650052:
        reason = (
            f"AADSTS650052: tenant {tenant} lacks a service the programme's app asks for "
            "(Defender for Business not provisioned yet?): consent cannot be given until it is"
        )
        action = (
            "The company finishes Defender's set-up (security.microsoft.com, Assets > Devices; "
            "it may take up to 24 hours), then its global administrator opens the consent URL "
            "again."
        )
        return AccessCheck(name, False, reason, action, Remedy.PROVISIONING)
    if code in _APP_CODES:
        reason = (
            f"AADSTS{code}: the programme's app {app} was refused its own credential; this is "
            "the programme's app registration, not the company"
        )
        return AccessCheck(name, False, reason, action, Remedy.APP)
    if code == 90002:
        reason = f"AADSTS90002: no tenant {tenant} exists"
        return AccessCheck(
            name, False, reason, "Check the tenant id recorded for the company.", Remedy.TENANT_ID
        )
    return AccessCheck(name, False, str(err), action)


_LABELS_BY_NAME = {f"sign-in to {label}": label for label in _LABELS.values()}


def _consent_action() -> str:
    return "Send the company's global administrator the consent URL to open."


def _read(client: DefenderClient, probe: Probe, settings: DefenderSettings) -> AccessCheck:
    name = _probe_name(probe)
    try:
        client.get_json(probe.api, probe.path, {"$top": "1"})
    except ResourceNotFound:  # MDE's answer to a list with nothing recent in it
        return AccessCheck(name, True, "readable; nothing there yet (404)")
    except TransientError as err:
        action = "Nothing is known yet: try again later."
        return AccessCheck(name, False, f"no answer: {err}", action, Remedy.NETWORK)
    except AuthError as err:
        return _refused(name, probe, err, settings)
    except ConnectorError as err:
        return AccessCheck(name, False, str(err))
    return AccessCheck(name, True)


def _refused(name: str, probe: Probe, err: AuthError, settings: DefenderSettings) -> AccessCheck:
    text = str(err)
    if " 403 DisabledFeature" in text:
        return AccessCheck(
            name,
            False,
            "403 DisabledFeature: Defender is not provisioned in the tenant yet, or no device "
            "is onboarded",
            err.operator_action,
            Remedy.PROVISIONING,
        )
    if " 403 " in text:
        permission = " or ".join(probe.permissions)
        return AccessCheck(
            name,
            False,
            f"403: the programme's app lacks {permission} in this tenant ({text})",
            f"Add {probe.permissions[0]} ({_LABELS[probe.api]}, application permission) to the "
            f"programme's app registration, then {_consent_again(settings)}.",
            Remedy.PERMISSION,
        )
    return AccessCheck(name, False, text, err.operator_action)


def _role(role: Role, roles: frozenset[str], settings: DefenderSettings) -> AccessCheck:
    name = _role_name(role)
    if role.permission in roles:
        return AccessCheck(name, True, "granted (not tried: it would act on the tenant)")
    return AccessCheck(
        name,
        False,
        f"not granted: the token's roles lack {role.permission}",
        f"Add {role.permission} ({_LABELS[role.api]}, application permission) to the "
        f"programme's app registration, then {_consent_again(settings)}.",
        Remedy.PERMISSION,
    )
