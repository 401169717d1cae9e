"""What the onboarding detection test and the EICAR test file look like in Defender's alerts.

The detection test is Microsoft's documented command (run-detection-test, "Onboard devices"
in Defender for Business): a PowerShell that downloads from the device itself into a
`test-MDATP-test` folder (`test-WDATP-test` in the older instructions) and the alert that
answers it, Informational "[Test Alert] Suspicious Powershell commandline" from Defender for
Endpoint's EDR (defender-api.md §11). The alerts are the documented Graph alert reshaped:
its process evidence runs the command, nothing else of the payload changes.
"""

from __future__ import annotations

import copy
from typing import Any

# The command as the older instructions print it ("$ErrorActionPreference=" with no space,
# the WDATP folder, doubled backslashes); the sandbox raises the newer MDATP spelling.
DOCUMENTED_COMMAND = (
    "powershell.exe -NoExit -ExecutionPolicy Bypass -WindowStyle Hidden "
    "$ErrorActionPreference= 'silentlycontinue';(New-Object System.Net.WebClient)"
    ".DownloadFile('http://127.0.0.1/1.exe', 'C:\\\\test-WDATP-test\\\\invoice.exe');"
    "Start-Process 'C:\\\\test-WDATP-test\\\\invoice.exe'"
)
TEST_TITLE = "[Test Alert] Suspicious Powershell commandline"

# The EICAR test file (the 68-byte EICAR string), checked with hashlib.
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
EICAR_SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"


def reshaped(
    alert: dict[str, Any],
    *,
    title: str,
    severity: str,
    category: str = "Execution",
    command: str | None = None,
    file_sha256: str | None = None,
) -> dict[str, Any]:
    """The documented Graph alert as another alert: its title and severity, and optionally
    the command its process evidence ran or the sha256 its file evidence names."""
    changed = copy.deepcopy(alert) | {
        "title": title,
        "severity": severity,
        "category": category,
        "detectionSource": "microsoftDefenderForEndpoint",
        "mitreTechniques": ["T1059.001"] if category == "Execution" else [],
    }
    for item in changed["evidence"]:
        kind = item["@odata.type"].rpartition(".")[2]
        if kind == "processEvidence" and command is not None:
            item["processCommandLine"] = command
            item["imageFile"] |= {"fileName": "powershell.exe", "sha1": None, "sha256": None}
        if kind == "fileEvidence" and file_sha256 is not None:
            item["fileDetails"] |= {"sha256": file_sha256, "sha1": None}
        if kind == "processEvidence" and file_sha256 is not None:
            item["imageFile"] |= {"sha256": None, "sha1": None}
    return changed
