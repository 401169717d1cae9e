"""Alert evidence, Graph alerts_v2 and MDE /api/alerts shapes, as the contract's `Evidence`.

Evidence only adds detail to an alert, so reading it never fails: an entry that is not an
object, a field of the wrong type or an unknown `@odata.type` is skipped on its own and
the rest of the alert (and of its evidence) is kept.

Users are recorded in every form the payload gives, so a playbook rule may name any of
them: the account name (`tanaka`), `DOMAIN\\name` when a domain is sent (`SAKURA\\tanaka`)
and the UPN (`tanaka@sakura.example`); each once, compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from edrtrial.connectors.base import Evidence
from edrtrial.connectors.support import EvidenceCollector, flat

GRAPH_NAMESPACE = "microsoft.graph.security."
_HASH_FIELDS = ("sha256", "sha1", "md5")


def _object(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    return value if isinstance(value, Mapping) else {}


def _user_account(found: EvidenceCollector, account: Mapping[str, Any]) -> None:
    found.account(
        account.get("accountName"), account.get("domainName"), account.get("userPrincipalName")
    )


def _file(found: EvidenceCollector, details: Mapping[str, Any]) -> None:
    for field in _HASH_FIELDS:
        found.file_hash(details.get(field))


def _user_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    _user_account(found, _object(item, "userAccount"))


def _process_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    # The parent's image (explorer.exe, services.exe…) would only add noise to hash rules.
    _user_account(found, _object(item, "userAccount"))
    _file(found, _object(item, "imageFile"))
    found.command_line(item.get("processCommandLine"))


def _file_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    _file(found, _object(item, "fileDetails"))


def _ip_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    found.ip(item.get("ipAddress"))


def _url_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    found.url(item.get("url"))


def _device_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    for user in flat(item.get("loggedOnUsers")):
        if isinstance(user, Mapping):
            found.account(user.get("accountName"), user.get("domainName"))


def _mailbox_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    found.user(item.get("primaryAddress"))
    found.user(item.get("upn"))
    _user_account(found, _object(item, "userAccount"))


def _analyzed_message_evidence(item: Mapping[str, Any], found: EvidenceCollector) -> None:
    # The recipient is the tenant's user; the senders are outsiders and not users here.
    found.user(item.get("recipientEmailAddress"))
    found.ip(item.get("senderIp"))
    for url in flat(item.get("urls")):
        found.url(url)


_GRAPH_READERS: Mapping[str, Callable[[Mapping[str, Any], EvidenceCollector], None]] = {
    "userevidence": _user_evidence,
    "processevidence": _process_evidence,
    "fileevidence": _file_evidence,
    "ipevidence": _ip_evidence,
    "urlevidence": _url_evidence,
    "deviceevidence": _device_evidence,
    "mailboxevidence": _mailbox_evidence,
    "analyzedmessageevidence": _analyzed_message_evidence,
}


def graph_evidence(items: Iterable[Any]) -> Evidence:
    """Users, hashes, IPs, URLs and command lines named by a Graph alert's `evidence` array."""
    found = EvidenceCollector()
    for item in items:
        if not isinstance(item, Mapping):
            continue
        odata_type = item.get("@odata.type")
        if not isinstance(odata_type, str):
            continue
        name = odata_type.strip().lower().lstrip("#").removeprefix(GRAPH_NAMESPACE)
        reader = _GRAPH_READERS.get(name)
        if reader is not None:
            reader(item, found)
    return found.evidence()


def mde_evidence(alert: Mapping[str, Any]) -> Evidence:
    """The same from a Defender for Endpoint `/api/alerts` item (`$expand=evidence`).

    Its evidence entries are flat, typed by `entityType` (User, Process, File, Ip, Url);
    the alert's `relatedUser` (`userName`, `domainName`) counts as a user too.
    """
    found = EvidenceCollector()
    related = _object(alert, "relatedUser")
    found.account(related.get("userName"), related.get("domainName"))
    for item in flat(alert.get("evidence")):
        if not isinstance(item, Mapping):
            continue
        entity = item.get("entityType")
        kind = entity.strip().lower() if isinstance(entity, str) else ""
        if kind in ("user", "process"):
            found.account(
                item.get("accountName"), item.get("domainName"), item.get("userPrincipalName")
            )
        if kind in ("file", "process"):
            _file(found, item)
        if kind == "process":
            found.command_line(item.get("processCommandLine"))
        if kind == "ip":
            found.ip(item.get("ipAddress"))
        if kind == "url":
            found.url(item.get("url"))
    return found.evidence()
