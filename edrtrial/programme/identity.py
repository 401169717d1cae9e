"""Who a company is: its 法人番号 checked, its name and address compared as one writes them.

An applicant types its name as "（株）さくら製作所", "㈱さくら製作所" or "株式会社 さくら製作所",
its digits full-width or half-width, its address with or without a postal code. Identity
compares the forms below; what a person reads (a list, a mail) keeps the name as typed.

The 法人番号 is 13 digits whose first is a check digit over the other twelve (the National Tax
Agency's rule, 法人番号の指定等に関する省令 第二条): 9 − (Σ Pn × Qn mod 9), where Pn is the
n-th digit of the twelve counted from the right (n = 1 is the last) and Qn is 1 when n is
odd, 2 when n is even. The NTA's own number 7000012050002 checks: 2·1 + 5·1 + 2·1 + 1·2 =
11, 11 mod 9 = 2, 9 − 2 = 7.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

CORPORATE_NUMBER_DIGITS = 13

# The legal forms an applicant writes in full or abbreviated (after NFKC, which turns ㈱ and
# （株） into "(株)"): each collapses to its full form, where it was written (前株 and 後株
# are different names, so the position stays).
_LEGAL_FORMS: dict[str, tuple[str, ...]] = {
    "株式会社": ("(株)",),
    "有限会社": ("(有)",),
    "合同会社": ("(同)",),
    "合資会社": ("(資)",),
    "合名会社": ("(名)",),
    "一般社団法人": ("(一社)", "(社)"),
    "一般財団法人": ("(一財)", "(財)"),
    "特定非営利活動法人": ("(特非)", "NPO法人"),
}
_SPACES = re.compile(r"\s+")
# Hyphens, dashes and long-vowel marks an address writes between numbers (1−2−3, 1ー2ー3).
_DASHES = re.compile(r"(?<=\d)[\-‐‑‒–—―−ー－ｰ](?=\d)")
# A long number Excel shows (and saves) in exponent notation: 5.01080E+12.
_EXPONENT = re.compile(r"\d(?:\.\d+)?[eE]\+?\d+")
# Block numbers in words (3丁目1番1号, 3丁目1番地1) as an address also writes them with dashes.
_BLOCK_WORDS = re.compile(r"(?<=\d)(?:丁目|番地|番)(?=\d)")
_HOUSE_NUMBER = re.compile(r"(?<=\d)号(?![館棟室])")
_POSTAL = re.compile(r"^(?:〒|郵便番号)?\s*\d{3}\s*-?\s*\d{4}\s*")


def nfkc(text: str) -> str:
    """Full-width letters and digits as half-width, half-width kana as full-width, trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def check_digit(base: str) -> int:
    """The check digit (1–9) of a 法人番号's twelve base digits."""
    if len(base) != CORPORATE_NUMBER_DIGITS - 1 or not base.isascii() or not base.isdigit():
        raise ValueError(f"a 法人番号's base is 12 digits, not {base!r}")
    total = sum(
        int(digit) * (1 if n % 2 == 1 else 2) for n, digit in enumerate(reversed(base), start=1)
    )
    return 9 - total % 9


def corporate_number(text: str) -> str:
    """The 13 digits of a 法人番号 as typed (full-width, with spaces or hyphens), or a
    ValueError saying what is wrong with it; the check digit is not judged here."""
    digits = re.sub(r"[\s\-‐−ー]", "", nfkc(text))
    if _EXPONENT.fullmatch(digits):
        raise ValueError(
            f"{text!r} is Excel's exponent notation: format the column as text and type the "
            "13 digits again"
        )
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"法人番号 has characters other than digits: {text!r}")
    if len(digits) != CORPORATE_NUMBER_DIGITS:
        raise ValueError(f"法人番号 has {len(digits)} digits, not 13")
    return digits


def is_valid_corporate_number(number: str) -> bool:
    """Whether the 13 digits' first is the check digit of the other twelve."""
    return (
        len(number) == CORPORATE_NUMBER_DIGITS
        and number.isascii()
        and number.isdigit()
        and int(number[0]) == check_digit(number[1:])
    )


def normalised_name(name: str) -> str:
    """A company's name as identity compares it: NFKC, no spaces, legal forms in full,
    Latin letters in one case. "（株）さくら 製作所" and "株式会社さくら製作所" are one."""
    text = _SPACES.sub("", nfkc(name))
    for full, short_forms in _LEGAL_FORMS.items():
        for short in short_forms:
            text = text.replace(short, full)
    return text.casefold()


def without_postal_code(address: str) -> str:
    """The address in NFKC, without the postal code it may start with (〒100-0001)."""
    return _POSTAL.sub("", nfkc(address)).lstrip()


def normalised_address(address: str) -> str:
    """An address as identity compares it: NFKC, no postal code, no spaces, one dash, block
    numbers with dashes (3丁目1番1号 is 3-1-1)."""
    text = without_postal_code(address)
    text = _SPACES.sub("", text)
    text = _HOUSE_NUMBER.sub("", _BLOCK_WORDS.sub("-", text))
    return _DASHES.sub("-", text).casefold()


def identity_key(name: str, address: str, representative: str) -> str:
    """Who a business is without a 法人番号 (a sole proprietor), as a digest of its normalised
    name, address and representative: the same business however it typed them. Also a second
    check for corporations (one that applies again under a new 法人番号)."""
    parts = (normalised_name(name), normalised_address(address), normalised_name(representative))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
