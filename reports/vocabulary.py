"""Plain words for EDR terms, so an SME reader never has to decode a category or a state."""

from __future__ import annotations

from datetime import date, datetime

from edrtrial.models import Alert
from edrtrial.states import TicketState
from edrtrial.timeutil import to_jst

SEVERITY_ORDER = ("high", "medium", "low", "informational")
SEVERITY_JA = {"high": "高", "medium": "中", "low": "低", "informational": "情報"}
SEVERITY_EN = {"high": "High", "medium": "Medium", "low": "Low", "informational": "Informational"}
_WEEKDAY_JA = "月火水木金土日"

# Keys are categories with spaces, underscores and case removed (MDE and Graph spell them apart).
CATEGORY_JA = {
    "initialaccess": "外部からの侵入の試み（不審なメールやWebサイトなど）",
    "phishing": "フィッシング（偽のメールやWebサイトで情報をだまし取る手口）",
    "execution": "不審なプログラムやコマンドの実行",
    "persistence": "不正なプログラムを端末に住み着かせようとする動き",
    "privilegeescalation": "管理者の権限を不正に得ようとする動き",
    "defenseevasion": "セキュリティ対策をすり抜けようとする動き",
    "credentialaccess": "パスワードなどのログイン情報を盗もうとする動き",
    "discovery": "社内のパソコンや設定を探る動き",
    "lateralmovement": "社内の他のパソコンへ侵入を広げようとする動き",
    "collection": "社内の情報を集めようとする動き",
    "commandandcontrol": "外部の攻撃者のサーバーとの不審な通信",
    "exfiltration": "社内の情報を外部へ持ち出そうとする動き",
    "impact": "データの破壊や暗号化など、業務を妨げる動き",
    "malware": "ウイルス（マルウェア）",
    "ransomware": "ランサムウェア（データを暗号化して身代金を要求するウイルス）",
    "exploit": "ソフトウェアの弱点（脆弱性）を悪用しようとする動き",
    "unwantedsoftware": "望ましくないソフトウェア",
}
CATEGORY_EN = {
    "initialaccess": "An attempt to get in (for example through a malicious e-mail or website)",
    "phishing": "Phishing (fake e-mails or websites that trick people into giving information)",
    "execution": "A suspicious program or command was run",
    "persistence": "An attempt to make a malicious program stay on the computer",
    "privilegeescalation": "An attempt to gain administrator rights",
    "defenseevasion": "An attempt to get around the security software",
    "credentialaccess": "An attempt to steal passwords or other sign-in information",
    "discovery": "Something exploring your computers and settings",
    "lateralmovement": "An attempt to spread to other computers in your office",
    "collection": "An attempt to gather your company's information",
    "commandandcontrol": "Suspicious communication with an attacker's server",
    "exfiltration": "An attempt to send your company's information outside",
    "impact": "An attempt to destroy or encrypt data and disrupt work",
    "malware": "A virus (malware)",
    "ransomware": "Ransomware (a virus that encrypts data and demands a ransom)",
    "exploit": "An attempt to exploit a software weakness (vulnerability)",
    "unwantedsoftware": "Unwanted software",
}
OTHER_JA = "不審な動き"
OTHER_EN = "Suspicious activity"

TEST_TITLE_PREFIX = "[test alert]"
# Suppression reasons the playbooks give to tests (playbooks/default.toml: the onboarding
# detection test, and EICAR-style test files someone used to check the protection).
TEST_REASONS = frozenset({"detection-test", "detection_test", "test-file", "test_file"})

# Ticket states in words a non-IT reader understands: every state, and only real ones.
TICKET_STATE_JA: dict[TicketState, str] = {
    TicketState.NEW: "対応中",
    TicketState.ACKNOWLEDGED: "対応中",
    TicketState.IN_PROGRESS: "対応中",
    TicketState.RESOLVED: "対応済み",
    TicketState.CLOSED: "対応済み",
}
TICKET_STATE_EN: dict[TicketState, str] = {
    TicketState.NEW: "In progress",
    TicketState.ACKNOWLEDGED: "In progress",
    TicketState.IN_PROGRESS: "In progress",
    TicketState.RESOLVED: "Handled",
    TicketState.CLOSED: "Handled",
}


def category_key(category: str) -> str:
    """A category reduced to letters, lower case: 'Credential Access' -> 'credentialaccess'."""
    return "".join(ch for ch in category.casefold() if ch.isalnum())


def severity_key(severity: str) -> str:
    """One of SEVERITY_ORDER; anything unknown or unspecified counts as informational."""
    key = (severity or "").casefold()
    return key if key in SEVERITY_JA else "informational"


def is_detection_test(alert: Alert) -> bool:
    """An installation / protection test (`[Test Alert] …`, or a playbook marked it as one)."""
    if (alert.title or "").strip().casefold().startswith(TEST_TITLE_PREFIX):
        return True
    return (alert.suppressed_reason or "").casefold() in TEST_REASONS


def plain_title(alert: Alert, language: str = "ja") -> str:
    """What the alert is about, in plain words of `language` ('ja' or 'en')."""
    if is_detection_test(alert):
        return "EDRの動作確認テスト" if language == "ja" else "The EDR's installation test"
    table, other = (CATEGORY_JA, OTHER_JA) if language == "ja" else (CATEGORY_EN, OTHER_EN)
    key = category_key(alert.category or "")
    if key not in table and "phish" in (alert.title or "").casefold():
        key = "phishing"
    return table.get(key, other)


def ticket_state_ja(state: str) -> str:
    """A ticket's state as the company reads it."""
    return TICKET_STATE_JA[TicketState(state)]


def ticket_state_en(state: str) -> str:
    """A ticket's state in English for the company."""
    return TICKET_STATE_EN[TicketState(state)]


def jst_minute(value: datetime) -> str:
    """'2026/11/08 00:30' in Tokyo time."""
    return to_jst(value).strftime("%Y/%m/%d %H:%M")


def ja_date(value: date) -> str:
    """'2026/11/08'."""
    return value.strftime("%Y/%m/%d")


def ja_date_weekday(value: date) -> str:
    """'2026/11/08（日）'."""
    return f"{ja_date(value)}（{_WEEKDAY_JA[value.weekday()]}）"


def device_names(alert: Alert, language: str = "ja") -> str:
    """The alert's device names, or a plain note that the EDR named none."""
    names = [name for name in alert.device_names or [] if name]
    if names:
        return ("、" if language == "ja" else ", ").join(names)
    return "（端末名なし）" if language == "ja" else "(no device named)"


# Device actions as the company reads them; an unknown status never reads as done.
ACTION_KIND_JA = {
    "isolate": "ネットワークからの隔離",
    "release": "隔離の解除",
    "av_scan": "ウイルススキャン",
    "offboard": "EDRの削除",
}
ACTION_KIND_EN = {
    "isolate": "Isolated from the network",
    "release": "Released from isolation",
    "av_scan": "Virus scan",
    "offboard": "EDR removed",
}
ACTION_RESULT_JA = {"done": "完了", "running": "実行中", "failed": "できませんでした"}
ACTION_RESULT_EN = {"done": "Done", "running": "In progress", "failed": "Did not complete"}
_ACTION_DONE = frozenset({"succeeded", "success", "completed", "done"})
_ACTION_FAILED = frozenset({"failed", "timeout", "cancelled", "canceled", "error"})
# Proposals an operator has not confirmed (or replaced): nothing happened to the device.
_ACTION_NOT_TAKEN = frozenset({"proposed", "superseded", "declined", "rejected", "dismissed"})


def action_result(status: str) -> str:
    """'done', 'failed', 'not_taken' (a proposal only) or 'running' (sent, pending, unknown)."""
    key = (status or "").casefold()
    if key in _ACTION_DONE:
        return "done"
    if key in _ACTION_FAILED or key.startswith("failed"):
        return "failed"
    if key in _ACTION_NOT_TAKEN:
        return "not_taken"
    return "running"


def action_label(kind: str, language: str = "ja") -> str:
    """What was done to a device, in plain words."""
    table = ACTION_KIND_EN if language == "en" else ACTION_KIND_JA
    return table.get(kind.casefold(), kind)


def device_label(name: str, language: str = "ja") -> str:
    """A device's name for the company, or a plain note that it has none (never an EDR id)."""
    name = name.strip()
    if name:
        return name
    return "（端末名なし）" if language == "ja" else "(no device name)"
