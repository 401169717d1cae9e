"""Values as people write them on a form: amounts of yen, head counts, yes and no, dates,
the prefecture an address starts with.

"3億円", "3,000万円" and "¥50,000,000" are one kind of amount; "45名" and "４５" one count;
はい, 有, ○ and 1 one yes. A value that is none of these is a `CellError` saying what was
written and how to write it, which the caller reports with its column and line.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from edrtrial.config import ProgrammeConfig
from edrtrial.programme.identity import nfkc, without_postal_code
from edrtrial.timeutil import JST, as_utc

CORPORATION, SOLE_PROPRIETOR = "corporation", "sole_proprietor"

PREFECTURES = (
    "北海道 青森県 岩手県 宮城県 秋田県 山形県 福島県 茨城県 栃木県 群馬県 埼玉県 千葉県 東京都 "
    "神奈川県 新潟県 富山県 石川県 福井県 山梨県 長野県 岐阜県 静岡県 愛知県 三重県 滋賀県 京都府 "
    "大阪府 兵庫県 奈良県 和歌山県 鳥取県 島根県 岡山県 広島県 山口県 徳島県 香川県 愛媛県 高知県 "
    "福岡県 佐賀県 長崎県 熊本県 大分県 宮崎県 鹿児島県 沖縄県"
).split()
_YES = {"はい", "有", "有り", "あり", "○", "〇", "◯", "1", "true", "yes", "y", "該当", "該当する"}
_NO = {"いいえ", "無", "無し", "なし", "×", "0", "false", "no", "n", "-", "非該当", "該当しない"}
_NONE = {"", "-", "ー", "―", "なし", "無し", "無"}
_UNITS = (("兆", 10**12), ("億", 10**8), ("百万", 10**6), ("万", 10**4))
_NUMBER = r"\d+(?:\.\d+)?"
_GROUP = re.compile(rf"^(?:({_NUMBER})千)?({_NUMBER})?$")
_ADDRESS_PART = r"[^@\s,;<>()\[\]\"\\]+"  # no list, display name or quoting
_EMAIL = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}")
_RECEIVED_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")


class CellError(ValueError):
    """What is wrong with one cell (the column is added by the caller)."""


def parse_yen(text: str) -> int | None:
    """Yen as written: "3億円", "3,000万円", "3億5000万円", "5千万", "300百万円" (a financial
    statement's unit), "¥50,000,000", "０円" (None for a blank, "なし" or "-")."""
    value = "".join(nfkc(text).split()).replace(",", "").replace("，", "")
    value = value.removeprefix("¥").removeprefix("\\").removesuffix("円")
    if value in _NONE:
        return None
    total = Decimal(0)
    rest = value
    for unit, size in _UNITS:
        head, sep, tail = rest.partition(unit)
        if sep:
            total += _group(head, text) * size
            rest = tail
    total += _group(rest, text)
    if total != total.to_integral_value():
        raise CellError(f"{text!r} is not a whole number of yen")
    return int(total)


def _group(text: str, original: str) -> Decimal:
    """One group between the large units: "5000", "5千", "3.5", or nothing."""
    if not text:
        return Decimal(0)
    found = _GROUP.match(text)
    if not found or not any(found.groups()):
        raise CellError(f"{original!r} is not an amount of yen (write e.g. 3億円 or 50,000,000)")
    try:
        thousands = Decimal(found.group(1) or 0) * 1000
        return thousands + Decimal(found.group(2) or 0)
    except InvalidOperation as err:
        raise CellError(f"{original!r} is not an amount of yen") from err


def parse_count(text: str) -> int | None:
    """A head count as written: "45", "45名", "45人", "４５" (None for a blank)."""
    value = "".join(nfkc(text).split()).replace(",", "")
    value = value.removesuffix("名").removesuffix("人").removesuffix("台")
    if value in _NONE:
        return None
    if not value.isascii() or not value.isdigit():
        raise CellError(f"{text!r} is not a whole number (write e.g. 45 or 45名)")
    return int(value)


def parse_yes(text: str) -> bool:
    """Yes or no as written: はい/いいえ, 有/無, あり/なし, ○/×, 1/0, true/false (blank: no)."""
    value = nfkc(text).casefold()
    if value in _YES:
        return True
    if value in _NO or value == "":
        return False
    raise CellError(f"{text!r} is neither yes nor no (write はい or いいえ)")


def prefecture_of(address: str) -> str:
    """The prefecture an address starts with (after a postal code), or "" when it names none."""
    text = without_postal_code(address)
    for prefecture in PREFECTURES:
        if text.startswith(prefecture):
            return prefecture
    return ""


def parse_received(text: str) -> datetime:
    """When the form was sent: "2026/12/01 10:23", "2026-12-01 10:23:45", ISO 8601 with an
    offset; a time without a zone is Tokyo's."""
    value = " ".join(nfkc(text).split())
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None:
        slashed = value.replace("-", "/").replace("T", " ")
        for form in _RECEIVED_FORMATS:
            try:
                parsed = datetime.strptime(slashed, form)
                break
            except ValueError:
                continue
    if parsed is None:
        raise CellError(f"{text!r} is not a date and time (write e.g. 2026/12/01 10:23)")
    return as_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=JST))


def parse_kind(text: str, number: str) -> str:
    """法人 or 個人事業主 (blank: a 法人 when a 法人番号 is given)."""
    value = nfkc(text)
    if value in ("法人", "会社", "corporation"):
        return CORPORATION
    if value in ("個人事業主", "個人", "個人事業者", "sole_proprietor"):
        return SOLE_PROPRIETOR
    if value == "":
        return CORPORATION if nfkc(number) else SOLE_PROPRIETOR
    raise CellError(f"{text!r} is neither 法人 nor 個人事業主")


def parse_language(text: str) -> str:
    """The contact's language: ja unless English is asked for."""
    value = nfkc(text).casefold()
    if value in ("", "ja", "日本語", "japanese"):
        return "ja"
    if value in ("en", "英語", "english"):
        return "en"
    raise CellError(f"{text!r} is neither 日本語 nor English")


def parse_course(text: str, programme: ProgrammeConfig) -> str:
    """The course's key, from its key or its Japanese or English label (blank: the only
    course, or "edr")."""
    value = nfkc(text).casefold()
    courses = programme.courses
    if value == "":
        return next(iter(courses)) if len(courses) == 1 else "edr"
    for key, course in courses.items():
        if value in (key, nfkc(course.label_ja).casefold(), course.label_en.casefold()):
            return key
        if nfkc(course.label_ja).casefold() in value:  # "支援②EDR導入コース"
            return key
    known = ", ".join(c.label_ja for c in courses.values())
    raise CellError(f"{text!r} is no course of the programme ({known})")


def email(text: str) -> str:
    """One bare e-mail address (NFKC: a full-width @ is one); a list or a display name is
    refused, since it would mail someone the applicant did not mean."""
    value = nfkc(text)
    if not _EMAIL.fullmatch(value):
        raise CellError(f"{text!r} is not an e-mail address")
    return value
