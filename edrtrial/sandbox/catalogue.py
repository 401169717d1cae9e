"""The kinds of alert the sandbox raises, with the titles and MITRE ids Defender uses.

Severities and categories follow what an SME tenant really sees: mostly antivirus
detections and the onboarding detection test, now and then a hands-on-keyboard attack.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache

WINDOWS = frozenset({"Windows10", "Windows11"})
MACOS = frozenset({"macOS"})
LINUX = frozenset({"Linux"})

SEVERITY_RANK = {"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4}

_DETECTOR_NAMESPACE = uuid.UUID("9a3c2d1e-5b6f-4c7d-8e9f-0a1b2c3d4e5f")

_GENERIC_ACTIONS = (
    "Collect artifacts and determine scope\n"
    "\u2022\tReview the machine timeline for suspicious activities that may have occurred "
    "before and after the time of the alert.\n"
    "\u2022\tLook for the presence of relevant artifacts on other systems.\n\n"
    "Initiate containment & mitigation\n"
    "\u2022\tContact the user to verify intent and initiate local remediation actions as needed.\n"
    "\u2022\tUpdate AV signatures and run a full scan.\n"
    "\u2022\tIf credential theft is suspected, reset all relevant users passwords."
)

DETECTION_TEST_COMMAND = (
    "powershell.exe -NoExit -ExecutionPolicy Bypass -WindowStyle Hidden "
    "$ErrorActionPreference = 'silentlycontinue';(New-Object System.Net.WebClient)"
    ".DownloadFile('http://127.0.0.1/1.exe', 'C:\\\\test-MDATP-test\\\\invoice.exe');"
    "Start-Process 'C:\\\\test-MDATP-test\\\\invoice.exe'"
)


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of detection: what the alert says and which evidence it carries."""

    key: str
    title: str
    severity: str
    category: str
    mitre: tuple[str, ...]
    detection_source: str
    description: str
    platforms: frozenset[str]
    weight: float
    threat_name: str | None = None
    threat_family: str | None = None
    file_name: str | None = None
    file_dir: str | None = None
    command_line: str | None = None
    # Network evidence: each alert names one of these (picked by its id), as urlEvidence and
    # ipEvidence; a URL and an IP at the same position belong together.
    urls: tuple[str, ...] = ()
    remote_ips: tuple[str, ...] = ()
    recommended_actions: str = _GENERIC_ACTIONS

    @property
    def detector_id(self) -> str:
        """A stable detector GUID per kind, as Defender has one per detection rule."""
        return _detector_id(self.key)


@cache
def _detector_id(key: str) -> str:
    return str(uuid.uuid5(_DETECTOR_NAMESPACE, key))


_KINDS = (
    AlertKind(
        "detection_test",
        "[Test Alert] Suspicious Powershell commandline",
        "informational",
        "Execution",
        ("T1059.001",),
        "microsoftDefenderForEndpoint",
        " This is a test alert \nA suspicious Powershell commandline was found on the "
        "machine. This commandline might be used during installation, exploration, or "
        "in some cases with lateral movement activities.",
        WINDOWS,
        0.0,
        file_name="invoice.exe",
        file_dir="C:\\test-MDATP-test",
        command_line=DETECTION_TEST_COMMAND,
    ),
    AlertKind(
        "detection_test_companion",
        "Suspicious PowerShell command line",
        "medium",
        "Execution",
        ("T1059.001",),
        "microsoftDefenderForEndpoint",
        "A suspicious PowerShell command line was found on the device. Attackers use "
        "PowerShell to download and run payloads in memory.",
        WINDOWS,
        0.0,
        command_line=DETECTION_TEST_COMMAND,
    ),
    AlertKind(
        "eicar",
        "'EICAR_Test_File' malware was prevented",
        "informational",
        "Malware",
        (),
        "antivirus",
        "The EICAR anti-malware test file was detected and blocked. It is harmless and "
        "is used to check that antivirus protection works.",
        WINDOWS | MACOS | LINUX,
        1.5,
        threat_name="Virus:DOS/EICAR_Test_File",
        threat_family="EICAR_Test_File",
        file_name="eicar.com.txt",
        file_dir="Downloads",
    ),
    AlertKind(
        "ransomware",
        "Ransomware behavior detected in the file system",
        "high",
        "Ransomware",
        ("T1486",),
        "microsoftDefenderForEndpoint",
        "A process renamed and encrypted many files in a short time, which is typical of "
        "ransomware. Isolate the device and investigate immediately.",
        WINDOWS,
        0.2,
        file_name="svchostt.exe",
        file_dir="C:\\Users\\Public\\Libraries",
        command_line="svchostt.exe --encrypt C:\\Users --ext .locked",
    ),
    AlertKind(
        "credential_theft",
        "Possible credential theft: LSASS memory access",
        "high",
        "CredentialAccess",
        ("T1003.001",),
        "microsoftDefenderForEndpoint",
        "A process read the memory of the LSASS process, which holds credentials of "
        "signed-in users. Attackers dump it to steal passwords and hashes.",
        WINDOWS,
        0.3,
        file_name="comsvcs.dll",
        file_dir="C:\\Windows\\System32",
        command_line=(
            "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 "
            "C:\\Users\\Public\\lsass.dmp full"
        ),
    ),
    AlertKind(
        "hands_on_keyboard",
        "Suspicious remote activity",
        "medium",
        "LateralMovement",
        ("T1021.002", "T1569.002"),
        "microsoftDefenderForEndpoint",
        "A remote session started a service and ran commands on this device, a sign of "
        "hands-on-keyboard activity by an attacker moving between devices.",
        WINDOWS,
        0.4,
        file_name="PSEXESVC.exe",
        file_dir="C:\\Windows",
        command_line="PSEXESVC.exe",
    ),
    AlertKind(
        "phishing_link",
        "A potentially malicious URL click was detected",
        "medium",
        "InitialAccess",
        ("T1566.002",),
        "smartScreen",
        "A user opened a link to a site known for phishing. The user might have entered "
        "credentials on the site.",
        WINDOWS | MACOS,
        1.0,
        urls=(
            "https://login.microsoftonline-verify.example/common/oauth2/authorize",
            "https://sharepoint-invoice.example/shared/Invoice_0424.html",
            "http://delivery-notice.example/track?parcel=JP2024",
        ),
        remote_ips=("198.51.100.23", "198.51.100.87", "198.51.100.142"),
    ),
    AlertKind(
        "c2_beacon",
        "Possible command and control (C2) communication",
        "high",
        "CommandAndControl",
        ("T1071.001", "T1218.011"),
        "microsoftDefenderForEndpoint",
        "A process loaded from an unusual location keeps connecting to a remote server at "
        "regular intervals, as implants do when they wait for an attacker's commands.",
        WINDOWS,
        0.3,
        file_name="msupdate.dll",
        file_dir="C:\\Users\\Public\\Libraries",
        command_line="rundll32.exe C:\\Users\\Public\\Libraries\\msupdate.dll,Start",
        urls=(
            "https://cdn-updates.example/jquery-3.3.1.min.js",
            "https://api.telemetry-sync.example/v2/submit",
        ),
        remote_ips=("198.51.100.66", "198.51.100.201"),
    ),
    AlertKind(
        "pua",
        "'InstallCore' unwanted software was detected",
        "low",
        "Malware",
        (),
        "antivirus",
        "Potentially unwanted application (PUA) was detected. It can slow devices down, "
        "show ads or install other software.",
        WINDOWS,
        2.5,
        threat_name="PUA:Win32/InstallCore",
        threat_family="InstallCore",
        file_name="FreeVideoConverterSetup.exe",
        file_dir="Downloads",
    ),
    AlertKind(
        "mac_adware",
        "'Adload' malware was prevented",
        "low",
        "Malware",
        (),
        "antivirus",
        "Adware that injects advertisements into browsers was detected and blocked.",
        MACOS,
        1.5,
        threat_name="Trojan:MacOS/Adload",
        threat_family="Adload",
        file_name="Player.app",
        file_dir="Downloads",
    ),
    AlertKind(
        "hidden_file",
        "Suspicious execution of hidden file",
        "low",
        "DefenseEvasion",
        ("T1564.001",),
        "microsoftDefenderForEndpoint",
        "A hidden file has been launched. This activity could indicate a compromised host. "
        "Attackers often hide files associated with malicious tools to evade file system "
        "inspection and defenses.",
        WINDOWS,
        2.0,
        file_name="update.exe",
        file_dir="C:\\Users\\Public\\Libraries",
        command_line='"update.exe" /silent',
    ),
    AlertKind(
        "malware_prevented",
        "'Emotet' malware was prevented",
        "low",
        "Malware",
        (),
        "antivirus",
        "Malware was detected in a downloaded file and quarantined before it ran.",
        WINDOWS,
        2.0,
        threat_name="Trojan:Win32/Emotet.RPX!MTB",
        threat_family="Emotet",
        file_name="invoice_2024.doc",
        file_dir="Downloads",
    ),
    AlertKind(
        "asep_registry",
        "Anomaly detected in ASEP registry",
        "low",
        "Persistence",
        ("T1547.001",),
        "microsoftDefenderForEndpoint",
        "A process registered an unusual program to start automatically, a common way "
        "for malware to survive a reboot.",
        WINDOWS,
        1.0,
        command_line=(
            'reg.exe add "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" '
            '/v Updater /d "C:\\Users\\Public\\Libraries\\update.exe"'
        ),
    ),
    AlertKind(
        "exploration",
        "Suspicious sequence of exploration activities",
        "medium",
        "Discovery",
        ("T1087.001", "T1016", "T1069.001"),
        "microsoftDefenderForEndpoint",
        "Commands that enumerate users, groups and network settings ran in a short "
        "sequence, as attackers do after gaining access.",
        WINDOWS | LINUX,
        0.8,
        command_line="net.exe localgroup administrators",
    ),
    AlertKind(
        "linux_miner",
        "'CoinMiner' malware was detected",
        "medium",
        "Malware",
        ("T1496",),
        "antivirus",
        "A cryptocurrency miner was found on the server. It uses the server's resources "
        "and is often installed through a weak SSH password.",
        LINUX,
        1.0,
        threat_name="Trojan:Linux/CoinMiner",
        threat_family="CoinMiner",
        file_name="kdevtmpfsi",
        file_dir="/tmp",
        command_line="/tmp/kdevtmpfsi",
        urls=("stratum+tcp://pool.xmr-mining.example:4444",),
        remote_ips=("198.51.100.77",),
    ),
)

ALERT_KINDS: dict[str, AlertKind] = {kind.key: kind for kind in _KINDS}

#: Kinds that make a high-severity attack story on one device, in the order they happen.
ATTACK_CHAIN = ("hands_on_keyboard", "credential_theft", "ransomware")

#: Category names as the Defender portal writes them in incident names.
CATEGORY_NAMES = {
    "CredentialAccess": "Credential access",
    "DefenseEvasion": "Defense evasion",
    "InitialAccess": "Initial access",
    "LateralMovement": "Lateral movement",
    "CommandAndControl": "Command and control",
    "PrivilegeEscalation": "Privilege escalation",
    "SuspiciousActivity": "Suspicious activity",
}


def kinds_for(platform: str) -> list[AlertKind]:
    """Kinds that can fire on a device of this platform and are raised at random."""
    return [kind for kind in ALERT_KINDS.values() if platform in kind.platforms and kind.weight]


def category_name(category: str) -> str:
    """The portal's wording for a category ("CredentialAccess" → "Credential access")."""
    return CATEGORY_NAMES.get(category, category)
