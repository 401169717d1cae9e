"""Defender alert evidence: users, file hashes, IPs and URLs for playbook rules."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import Evidence
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.connectors.defender.evidence import graph_evidence, mde_evidence

from test_defender_support import ALERTS_URL, fake_sign_in, graph_list, make_connector, payload

TOP = {"$top": "100"}
DOC_ALERT = payload("graph__list_alerts_v2.json")["value"][0]
DOC_SHA256 = "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec"
DOC_SHA1 = "5f1e8acedc065031aad553b710838eb366cfee9a"
SECURITY = "#microsoft.graph.security."


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def evidence_of(*items: Any) -> Evidence:
    return graph_evidence(list(items))


def test_the_documented_alert_evidence_reaches_the_record(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, json=graph_list([DOC_ALERT]))

    [batch] = list(connector.fetch_alerts(None))

    [alert] = batch.records
    # processEvidence: its account (name and DOMAIN\name; no UPN is sent), image hashes and
    # command line; the fileEvidence names the same file, so its hashes are not repeated.
    # The parent's image and the device and registry evidence add nothing.
    assert alert.evidence == Evidence(
        users=("SYSTEM", "NT AUTHORITY\\SYSTEM"),
        file_hashes=(DOC_SHA256, DOC_SHA1),
        command_lines=('"MsSense.exe"',),
    )
    assert alert.evidence.as_json() == {
        "users": ["SYSTEM", "NT AUTHORITY\\SYSTEM"],
        "file_hashes": [DOC_SHA256, DOC_SHA1],
        "command_lines": ['"MsSense.exe"'],
    }


def test_an_incidents_expanded_alert_has_the_same_evidence() -> None:
    incident = payload("graph__list_incidents_expand_alerts.json")["value"][0]

    found = graph_evidence(incident["alerts"][0]["evidence"])

    assert found.file_hashes == (DOC_SHA256, DOC_SHA1)
    assert found.users == ("SYSTEM", "NT AUTHORITY\\SYSTEM")


def test_every_documented_evidence_type_that_names_something_is_read() -> None:
    user = {
        "@odata.type": f"{SECURITY}userEvidence",
        "userAccount": {
            "accountName": "tanaka",
            "domainName": "SAKURA",
            "userSid": "S-1-5-21-1-2-3-1001",
            "azureAdUserId": None,
            "userPrincipalName": "tanaka@sakura.example",
            "displayName": "Tanaka",
        },
    }
    file = {
        "@odata.type": f"{SECURITY}fileEvidence",
        "fileDetails": {"sha256": "AB" * 32, "sha1": "CD" * 20, "md5": "EF" * 16},
    }
    ip = {"@odata.type": f"{SECURITY}ipEvidence", "ipAddress": "198.51.100.7"}
    url = {"@odata.type": f"{SECURITY}urlEvidence", "url": "https://phish.example/login"}
    device = {
        "@odata.type": f"{SECURITY}deviceEvidence",
        "loggedOnUsers": [{"accountName": "suzuki", "domainName": "SAKURA"}],
    }
    mailbox = {
        "@odata.type": f"{SECURITY}mailboxEvidence",
        "primaryAddress": "sato@sakura.example",
        "upn": "sato@sakura.example",
        "userAccount": {"accountName": "sato", "domainName": "SAKURA"},
    }
    message = {
        "@odata.type": f"{SECURITY}analyzedMessageEvidence",
        "senderIp": "203.0.113.9",
        "recipientEmailAddress": "ito@sakura.example",
        "p1Sender": {"emailAddress": "attacker@evil.example"},
        "urls": ["https://phish.example/login", "https://evil.example/payload"],
    }

    found = evidence_of(user, file, ip, url, device, mailbox, message)

    assert found.users == (
        "tanaka",
        "SAKURA\\tanaka",
        "tanaka@sakura.example",
        "suzuki",
        "SAKURA\\suzuki",
        "sato@sakura.example",  # primaryAddress and upn are one value
        "sato",
        "SAKURA\\sato",
        "ito@sakura.example",  # the recipient; senders are outsiders, not users
    )
    assert found.file_hashes == ("ab" * 32, "cd" * 20, "ef" * 16)  # lower-cased
    assert found.ips == ("198.51.100.7", "203.0.113.9")
    assert found.urls == ("https://phish.example/login", "https://evil.example/payload")


def test_repeats_are_kept_once_in_the_order_first_seen() -> None:
    first = {
        "@odata.type": f"{SECURITY}userEvidence",
        "userAccount": {"accountName": "Tanaka", "userPrincipalName": "tanaka@sakura.example"},
    }
    again = {
        "@odata.type": f"{SECURITY}userEvidence",
        "userAccount": {"accountName": "tanaka", "userPrincipalName": "TANAKA@sakura.example"},
    }
    hashes = {"@odata.type": f"{SECURITY}fileEvidence", "fileDetails": {"sha1": "AA" * 20}}
    same_hash = {"@odata.type": f"{SECURITY}fileEvidence", "fileDetails": {"sha1": "aa" * 20}}

    found = evidence_of(first, hashes, again, same_hash, first)

    assert found.users == ("Tanaka", "tanaka@sakura.example")  # first spelling wins
    assert found.file_hashes == ("aa" * 20,)


@pytest.mark.parametrize(
    "broken",
    [
        None,
        "userEvidence",
        42,
        [],
        {"@odata.type": None, "ipAddress": "198.51.100.99"},
        {"@odata.type": 7, "ipAddress": "198.51.100.99"},
        {"@odata.type": f"{SECURITY}networkConnectionEvidence", "ipAddress": "198.51.100.99"},
        {"@odata.type": f"{SECURITY}userEvidence", "userAccount": "tanaka"},
        {"@odata.type": f"{SECURITY}userEvidence", "userAccount": None},
        {"@odata.type": f"{SECURITY}userEvidence", "userAccount": {"accountName": ["x"]}},
        {"@odata.type": f"{SECURITY}fileEvidence", "fileDetails": ["sha256"]},
        {"@odata.type": f"{SECURITY}fileEvidence", "fileDetails": {"sha256": 12345}},
        {"@odata.type": f"{SECURITY}fileEvidence", "fileDetails": {"sha256": "not a hash"}},
        {"@odata.type": f"{SECURITY}ipEvidence", "ipAddress": {"v4": "198.51.100.99"}},
        {"@odata.type": f"{SECURITY}urlEvidence", "url": None},
        {"@odata.type": f"{SECURITY}urlEvidence", "url": "   "},
        {"@odata.type": f"{SECURITY}deviceEvidence", "loggedOnUsers": "tanaka"},
        {"@odata.type": f"{SECURITY}deviceEvidence", "loggedOnUsers": [None, 3]},
        {"@odata.type": f"{SECURITY}analyzedMessageEvidence", "urls": [None, 5, {}]},
    ],
)
def test_a_malformed_entry_adds_nothing_and_costs_nothing(broken: Any) -> None:
    good = {"@odata.type": f"{SECURITY}ipEvidence", "ipAddress": "198.51.100.1"}

    assert evidence_of(good, broken, good) == Evidence(ips=("198.51.100.1",))


def test_a_malformed_part_is_skipped_and_the_rest_of_the_entry_kept() -> None:
    process = {
        "@odata.type": f"{SECURITY}processEvidence",
        "userAccount": {"accountName": None, "domainName": "SAKURA", "userPrincipalName": 5},
        "imageFile": {"sha256": None, "sha1": "AB" * 20, "md5": ["x"]},
    }
    mailbox = {
        "@odata.type": f"{SECURITY}mailboxEvidence",
        "primaryAddress": {"address": "x"},
        "upn": "sato@sakura.example",
    }

    assert evidence_of(process, mailbox) == Evidence(
        users=("sato@sakura.example",), file_hashes=("ab" * 20,)
    )


def test_alerts_with_malformed_evidence_are_all_kept(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    not_a_list = DOC_ALERT | {"id": "not-a-list", "evidence": {"ipAddress": "198.51.100.1"}}
    junk = DOC_ALERT | {"id": "junk", "evidence": [None, 1, "x", [], {"@odata.type": 5}]}
    wrong_types = copy.deepcopy(DOC_ALERT) | {"id": "wrong-types"}
    device, file, process, registry = wrong_types["evidence"]
    device["mdeDeviceId"] = {"id": "73e7"}  # an unusable device id drops the device only
    file["fileDetails"] = "MsSense.exe"
    process["userAccount"] = ["SYSTEM"]
    registry["@odata.type"] = f"{SECURITY}somethingNewEvidence"
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=graph_list([not_a_list, junk, wrong_types])
    )

    [batch] = list(connector.fetch_alerts(None))

    assert batch.rejected == []
    first, second, third = batch.records
    assert first.evidence == second.evidence == Evidence()
    assert first.devices == second.devices == ()
    assert third.devices == ()
    assert third.evidence == Evidence(  # from imageFile and processCommandLine
        file_hashes=(DOC_SHA256, DOC_SHA1), command_lines=('"MsSense.exe"',)
    )
    assert third.title == DOC_ALERT["title"]


def test_the_mde_alerts_api_evidence_is_read_too() -> None:
    alert = payload("mde__get_alert_single_with_evidence.json")

    found = mde_evidence(alert)

    assert found.users == (
        "temp123",  # relatedUser
        "DOMAIN\\temp123",
        "name",  # the User entity
        "DOMAIN\\name",
        "temp123@microsoft.com",
    )
    assert found.file_hashes == (
        "a4752c71d81afd3d5865d24ddb11a6b0c615062fcc448d24050c2172d2cbccd6",  # Process
        "ff836cfb1af40252bd2a2ea843032e99a5b262ed",
        "dc0ade0c95d6db98882bc8fa6707e64353cd6f7767ff48d6a81a6c2aef21c608",  # File
        "8563f95b2f8a284fc99da44500cd51a77c1ff36c",
    )
    assert (found.ips, found.urls) == ((), ())
    assert found.command_lines == ("rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe",)


def test_mde_ip_and_url_entities_and_broken_ones() -> None:
    alert = {
        "relatedUser": "not an object",
        "evidence": [
            {"entityType": "Ip", "ipAddress": "198.51.100.5", "url": None},
            {"entityType": "Url", "url": "https://evil.example/x", "ipAddress": None},
            {"entityType": None, "ipAddress": "198.51.100.6"},
            {"entityType": "Registry", "registryKey": "HKLM\\Run"},
            "garbage",
            {"entityType": "File", "sha256": 3, "sha1": None},
        ],
    }

    assert mde_evidence(alert) == Evidence(ips=("198.51.100.5",), urls=("https://evil.example/x",))
    assert mde_evidence({"evidence": "none"}) == Evidence()


def test_process_command_lines_are_kept_as_they_ran_once_each() -> None:
    def process(command: Any) -> dict[str, Any]:
        return {"@odata.type": f"{SECURITY}processEvidence", "processCommandLine": command}

    test_command = "powershell.exe -NoExit -ExecutionPolicy Bypass -WindowStyle Hidden $x"
    found = evidence_of(
        process(f"  {test_command} "),
        process("   "),
        process(None),
        process(["x"]),
        process(test_command),
    )

    assert found.command_lines == (test_command,)
    assert found.as_json() == {"command_lines": [test_command]}
