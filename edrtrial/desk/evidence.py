"""An alert's evidence as an operator reads it: the process tree, files, command lines,
addresses, accounts and registry keys the EDR sent.

Defender sends its evidence as a list of typed items (`processEvidence`, `fileEvidence`,
`urlEvidence`, ...) in the alert's payload (`Alert.raw`); the store also keeps a flat
digest of it for the playbooks (`Alert.evidence`). The payload says more (which process
started which), so it is read first; an alert whose payload is gone (or another EDR's)
falls back to the digest. Everything here is text as the EDR sent it: untrusted, shown
only through escaping templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edrtrial.models import Alert

MAX_ITEMS = 200
"""Items read from one alert's evidence (a hostile payload could send thousands)."""


@dataclass(slots=True)
class ProcessNode:
    """A process of the alert's tree, with the processes it started."""

    name: str
    pid: str
    command_line: str = ""
    user: str = ""
    children: list[ProcessNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AlertEvidence:
    """What an alert's evidence names, each kind in the order the EDR sent it."""

    processes: list[ProcessNode]
    command_lines: list[str]
    files: list[str]
    urls: list[str]
    ips: list[str]
    users: list[str]
    registry: list[str]

    @property
    def empty(self) -> bool:
        return (
            not any(
                (self.processes, self.command_lines, self.files, self.urls, self.ips, self.users)
            )
            and not self.registry
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _kind(item: Mapping[str, Any]) -> str:
    return _text(item.get("@odata.type")).rsplit(".", 1)[-1]


def _path(details: Any) -> str:
    """A file's folder and name as one path (`C:\\Windows\\System32\\cmd.exe`)."""
    if not isinstance(details, Mapping):
        return ""
    name, folder = _text(details.get("fileName")), _text(details.get("filePath"))
    if folder and name:
        sep = "\\" if "\\" in folder else "/"
        return folder.rstrip("\\/") + sep + name
    return name or folder


def _account(account: Any) -> str:
    if not isinstance(account, Mapping):
        return ""
    upn = _text(account.get("userPrincipalName"))
    name, domain = _text(account.get("accountName")), _text(account.get("domainName"))
    local = f"{domain}\\{name}" if domain and name else name
    return upn or local


def _add(values: list[str], value: str) -> None:
    if value and value not in values:
        values.append(value)


def _tree(items: list[Mapping[str, Any]]) -> list[ProcessNode]:
    """The processes as a tree: each under the process that started it, where the evidence
    names it; a parent the evidence knows only by its image becomes a node of its own."""
    nodes: dict[str, ProcessNode] = {}
    parents: dict[str, str] = {}
    order: list[str] = []
    for item in items:
        pid = _text(item.get("processId"))
        key = pid or f"#{len(order)}"
        if key in nodes:
            continue
        image = item.get("imageFile")
        nodes[key] = ProcessNode(
            name=(_text(image.get("fileName")) if isinstance(image, Mapping) else "") or "?",
            pid=pid,
            command_line=_text(item.get("processCommandLine")),
            user=_account(item.get("userAccount")),
        )
        order.append(key)
        parent = _text(item.get("parentProcessId"))
        if parent and parent != key:
            parents[key] = parent
    for item in items:  # parents known only by their image, from their children's items
        parent = _text(item.get("parentProcessId"))
        image = item.get("parentProcessImageFile")
        name = _text(image.get("fileName")) if isinstance(image, Mapping) else ""
        if parent and parent not in nodes and name:
            nodes[parent] = ProcessNode(name=name, pid=parent)
            order.insert(0, parent)
    roots: list[ProcessNode] = []
    for key in order:
        above = parents.get(key)
        if above is not None and above in nodes and not _cycle(parents, key):
            nodes[above].children.append(nodes[key])
        else:
            roots.append(nodes[key])
    return roots


def _cycle(parents: Mapping[str, str], key: str) -> bool:
    """Whether following `key`'s parents comes back to it (a payload can claim anything)."""
    seen = {key}
    current = parents.get(key)
    while current is not None:
        if current in seen:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def evidence_of(alert: Alert) -> AlertEvidence:
    """The alert's evidence from its payload, else from the stored digest."""
    raw = alert.raw if isinstance(alert.raw, Mapping) else {}
    listed = raw.get("evidence")
    items = (
        [i for i in listed[:MAX_ITEMS] if isinstance(i, Mapping)]
        if isinstance(listed, list)
        else []
    )
    commands: list[str] = []
    files: list[str] = []
    urls: list[str] = []
    ips: list[str] = []
    users: list[str] = []
    registry: list[str] = []
    processes: list[Mapping[str, Any]] = []
    for item in items:
        kind = _kind(item)
        if kind == "processEvidence":
            processes.append(item)
            _add(commands, _text(item.get("processCommandLine")))
        elif kind == "fileEvidence":
            details = item.get("fileDetails")
            path = _path(details)
            sha = _text(details.get("sha256")) if isinstance(details, Mapping) else ""
            _add(files, f"{path}  sha256:{sha}" if path and sha else path)
        elif kind == "urlEvidence":
            _add(urls, _text(item.get("url")))
        elif kind == "ipEvidence":
            _add(ips, _text(item.get("ipAddress")))
        elif kind == "userEvidence":
            _add(users, _account(item.get("userAccount")))
        elif kind == "registryKeyEvidence":
            hive, key = _text(item.get("registryHive")), _text(item.get("registryKey"))
            _add(registry, f"{hive}\\{key}" if hive else key)
    stored = alert.evidence if isinstance(alert.evidence, Mapping) else {}

    def digest(kind: str, into: list[str]) -> None:
        if not into:
            for value in stored.get(kind) or []:
                _add(into, _text(value))

    digest("command_lines", commands)
    digest("urls", urls)
    digest("ips", ips)
    digest("users", users)
    if not files:
        for value in stored.get("file_hashes") or []:
            _add(files, f"sha256:{_text(value)}" if len(_text(value)) == 64 else _text(value))
    return AlertEvidence(_tree(processes), commands, files, urls, ips, users, registry)
