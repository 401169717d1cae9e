"""What a company should do next, chosen from what it faced (worded after the advisory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edrtrial.models import Alert
from edrtrial.reports.vocabulary import category_key, is_detection_test

SECURITY_ACTION_URL = "https://www.ipa.go.jp/security/security-action/"


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One thing to do, why it is suggested now, and the concrete steps."""

    key: str
    title: str
    reason: str
    actions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SecurityActionPointer:
    """Where the programme wants each company to get to: the two-star declaration."""

    title: str
    text: str
    url: str


_MAIL = Recommendation(
    key="mail",
    title="メールの添付ファイルとURLに注意する",
    reason="この期間に、不審なメールやWebサイトからの侵入の試みが検知されました。",
    actions=(
        "心当たりのないメールの添付ファイルは開かず、本文のURLもクリックしないでください。",
        "取引先を名乗るメールでも、請求書・支払い・賞与などを装った不審なものは、"
        "電話など別の方法で送り主に確認してください。",
        "開いてしまったときは、すぐに社内で共有し、サポートデスクにご相談ください。"
        "このことを社内の全員に周知してください。",
    ),
)
_PASSWORDS = Recommendation(
    key="passwords",
    title="パスワードを見直し、多要素認証を使う",
    reason="この期間に、パスワードなどのログイン情報を盗もうとする動きが検知されました。",
    actions=(
        "単純なパスワードや、使い回しているパスワードを変更してください。",
        "Microsoft 365 などのクラウドサービスでは、多要素認証"
        "（スマートフォンのアプリなどによる確認）を有効にしてください。",
        "使っていないアカウント（退職者のものなど）を削除し、"
        "管理者の権限を持つ人を必要な人だけにしてください。",
    ),
)
_BACKUP = Recommendation(
    key="backup",
    title="データのバックアップを取り、戻せるか試す",
    reason="この期間に、ウイルス（マルウェア）やランサムウェアに関わる検知がありました。",
    actions=(
        "大切なデータは定期的にバックアップし、1つはふだんネットワークにつながない場所"
        "（外付けディスクなど）に保管してください。",
        "バックアップから実際にデータを戻せるか、手順を確かめておいてください。",
    ),
)
_PROCEDURE = Recommendation(
    key="procedure",
    title="いざという時の連絡先と手順を決めておく",
    reason="この期間に、インシデント対応窓口が対応した検知がありました。",
    actions=(
        "パソコンに不審な表示や動きがあったとき、誰が、どこに連絡するかを社内で決めておいてください"
        "（この体験期間中の連絡先は、下記のインシデント対応窓口です）。",
        "取引先やお客様への連絡、社内での連絡の流れも確認しておいてください。",
    ),
)
_PATCHES = Recommendation(
    key="patches",
    title="パソコンや機器の更新（パッチ）を早めに適用する",
    reason="",
    actions=(
        "Windows Update やソフトウェアの更新の通知が来たら、早めに適用してください。",
        "VPN装置やルーターなど、インターネットとの出入口にある機器は攻撃に悪用されやすいため、"
        "ファームウェアを最新にしてください。",
    ),
)
_INVENTORY = Recommendation(
    key="inventory",
    title="会社のパソコンや機器を把握する",
    reason="",
    actions=(
        "社内のパソコン、スマートフォン、ルーターなどの一覧を作ってください。",
        "EDRが入っていないパソコンや、私物の端末が社内のネットワークにつながっていないか"
        "確認してください。",
    ),
)

# The same advice in English, key for key (a company whose contact reads English).
_EN = {
    "mail": Recommendation(
        key="mail",
        title="Be careful with e-mail attachments and links",
        reason="An attempt to get in through a suspicious e-mail or website was detected.",
        actions=(
            "Do not open attachments or click links in e-mails you do not expect.",
            "Check suspicious invoices, payment or bonus messages with the sender by telephone, "
            "even when they seem to come from a business partner.",
            "If someone opened one, tell your colleagues at once and contact the support desk. "
            "Share this with everyone in your company.",
        ),
    ),
    "passwords": Recommendation(
        key="passwords",
        title="Review passwords and use multi-factor authentication",
        reason="An attempt to steal passwords or other sign-in information was detected.",
        actions=(
            "Change simple passwords and passwords used for more than one service.",
            "Turn on multi-factor authentication (for example a smartphone app) for cloud "
            "services such as Microsoft 365.",
            "Delete unused accounts (such as those of people who left) and keep administrator "
            "rights to the people who need them.",
        ),
    ),
    "backup": Recommendation(
        key="backup",
        title="Back up your data and check you can restore it",
        reason="Detections related to a virus (malware) or ransomware were made.",
        actions=(
            "Back up important data regularly and keep one copy somewhere not normally "
            "connected to the network (such as an external disk).",
            "Check that you can actually restore data from the backup.",
        ),
    ),
    "procedure": Recommendation(
        key="procedure",
        title="Decide whom to call and what to do in an emergency",
        reason="The incident desk handled detections in this period.",
        actions=(
            "Decide who contacts whom when a computer shows something strange (during the "
            "trial, the incident desk below).",
            "Also check how you would inform business partners, customers and colleagues.",
        ),
    ),
    "patches": Recommendation(
        key="patches",
        title="Apply updates (patches) to computers and devices promptly",
        reason="",
        actions=(
            "Apply Windows Update and software updates soon after they are offered.",
            "Devices at the edge of your network, such as VPN appliances and routers, are often "
            "attacked: keep their firmware up to date.",
        ),
    ),
    "inventory": Recommendation(
        key="inventory",
        title="Know your company's computers and devices",
        reason="",
        actions=(
            "Make a list of your computers, smartphones, routers and other devices.",
            "Check that no computer without the EDR, and no personal device, is connected to "
            "your office network.",
        ),
    ),
}

_PHISHING_CATEGORIES = frozenset({"initialaccess", "phishing"})
_CREDENTIAL_CATEGORIES = frozenset({"credentialaccess"})
_MALWARE_CATEGORIES = frozenset({"malware", "ransomware", "impact"})
_CREDENTIAL_WORDS = ("credential", "password", "mimikatz")


def _matches(alert: Alert, categories: frozenset[str], words: tuple[str, ...]) -> bool:
    title = alert.title.casefold()
    return category_key(alert.category) in categories or any(word in title for word in words)


def topics_for(alerts: Sequence[Alert]) -> tuple[str, ...]:
    """Which topical advice fits what was seen: 'mail', 'passwords', 'backup' (in that order)."""
    real = [a for a in alerts if not is_detection_test(a)]
    topics: list[str] = []
    if any(_matches(a, _PHISHING_CATEGORIES, ("phish",)) for a in real):
        topics.append("mail")
    if any(_matches(a, _CREDENTIAL_CATEGORIES, _CREDENTIAL_WORDS) for a in real):
        topics.append("passwords")
    if any(_matches(a, _MALWARE_CATEGORIES, ("ransom", "malware")) for a in real):
        topics.append("backup")
    return tuple(topics)


def recommendations_for(
    alerts: Sequence[Alert], language: str = "ja"
) -> tuple[Recommendation, ...]:
    """Advice for what was seen (phishing, credential theft, malware), then the standing advice,
    in `language` ("ja" or "en": the same advice, key for key)."""
    real = [a for a in alerts if not is_detection_test(a)]
    topical = {"mail": _MAIL, "passwords": _PASSWORDS, "backup": _BACKUP}
    chosen = [topical[topic] for topic in topics_for(real)]
    if any(a.ticket_id is not None for a in real):
        chosen.append(_PROCEDURE)
    chosen.extend((_PATCHES, _INVENTORY))
    if language == "en":
        return tuple(_EN[rec.key] for rec in chosen)
    return tuple(chosen)


def security_action(language: str = "ja") -> SecurityActionPointer:
    """The pointer to IPA's SECURITY ACTION two-star declaration, the programme's goal."""
    if language == "en":
        return SecurityActionPointer(
            title="Aim for the SECURITY ACTION two-star declaration",
            text=(
                "The programme's goal for each company is IPA's SECURITY ACTION two-star "
                "self-declaration. Check where your company stands with IPA's 25-question "
                "self-diagnosis, then set a basic information security policy and publish it: "
                "that is the two-star declaration. The steps above prepare for it."
            ),
            url=SECURITY_ACTION_URL,
        )
    return SecurityActionPointer(
        title="SECURITY ACTION 二つ星宣言を目指しましょう",
        text=(
            "本事業は、IPA（情報処理推進機構）の SECURITY ACTION 二つ星宣言を目標としています。"
            "「5分でできる！情報セキュリティ自社診断」で自社の状況を把握したうえで、"
            "情報セキュリティポリシー（基本方針）を定めて外部に公開すると、二つ星を宣言できます。"
            "上の取り組みは、その準備にもなります。"
        ),
        url=SECURITY_ACTION_URL,
    )
