"""Untrusted text made safe for each place it is shown: data, never markup or control.

Everything an EDR sends (alert titles, descriptions, device, user and file names, command
lines, URLs) and everything an operator types reaches terminals, chat cards and mail. Each
output has its own rule, and each rule lives here so that there is one place to read it:

- a terminal: every control character is made visible, so an escape sequence cannot clear
  the screen, plant an OSC 8 hyperlink, move the cursor (`\\r`) or reverse what the operator
  reads (a bidi override), and an invisible character (a zero-width space, a tag character,
  a variation selector, a Hangul filler: Unicode's default-ignorable characters) cannot
  make `pc-01` and `pc-01`+U+200B read as one name. Rich markup is switched off where the
  CLI prints.
- one line or many: a title, a name, a table cell, an error, a prompt or a log message is
  one line (`one_line`: a line break is shown as `␊`), so EDR text cannot write a whole line
  the reader takes for ours ("state: closed" under a ticket's heading, another tenant's log
  line). Only a free-text body (a description, a note, a message) keeps its line breaks
  (`visible`), and is printed under its label.
- chat text that tools such as Slack parse (`<url|label>`, `<!channel>`): `&`, `<` and `>`
  written as entities (`chat_text`), as Slack's "escaping text" rule asks, and controls
  made visible as in a terminal.
- Teams cards: plain TextRuns (notify/webhooks.py), controls made visible.
- HTML and mail: Jinja2's autoescape and the email package treat text as data; the
  templates (reports/render.py) and the mail headers and bodies (notify/mail.py) also
  make controls visible, since a bidi override misleads a mail reader as much as a
  terminal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Bidirectional formatting characters: they reorder what follows on the screen, so
# "invoice‮fdp.exe" reads as "invoiceexe.pdf".
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_KEPT = frozenset("\n\t")  # in a body, a line break and a tab are text, not control
# Unicode's Default_Ignorable_Code_Point property: characters a renderer shows as nothing
# unless it supports them, not all of them format characters (Cf). A combining grapheme
# joiner (U+034F, Mn), a variation selector (U+FE00..FE0F, U+E0100..E01EF, Mn) or a Hangul
# filler (U+3164, Lo) makes "pc-01" and "pc-01"+U+034F read as one name as a zero-width
# space does. Ranges (inclusive) from DerivedCoreProperties.txt, Unicode 15.1,
# https://www.unicode.org/Public/15.1.0/ucd/DerivedCoreProperties.txt
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x200B, 0x200F),  # zero-width space, joiners, direction marks
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated format
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned, reserved as ignorable
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)
# The default-ignorable characters Python counts as printable (marks, letters): every other
# character `_marked` marks is a control, a format character or a line separator, which
# `str.isprintable` refuses, so most text is cleared by two C-speed checks (`_nothing_to_mark`).
_PRINTABLE_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
_CONTROL_PICTURES = 0x2400  # U+2400..U+241F picture U+0000..U+001F, U+2421 pictures DEL


def _shown(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(_CONTROL_PICTURES + code)  # "\x1b" -> "␛", "\r" -> "␍"
    if code == 0x7F:
        return "\u2421"  # ␡
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def _marked(char: str) -> bool:
    """Whether a reader would not see the character as it is: a control or an invisible."""
    return (
        unicodedata.category(char) in ("Cc", "Cf")  # Cf: zero-width, BOM, soft hyphen, bidi
        or char in _BIDI
        or char in "\u2028\u2029"
        or _default_ignorable(ord(char))
    )


def _default_ignorable(code: int) -> bool:
    if code < 0xAD:  # most text: ASCII and Latin-1 letters
        return False
    return any(start <= code <= end for start, end in _DEFAULT_IGNORABLE)


def _nothing_to_mark(text: str) -> bool:
    """True only when no character of `text` is marked (a fast check; False: look closer)."""
    return text.isprintable() and _PRINTABLE_IGNORABLE.search(text) is None


def is_control(char: str) -> bool:
    """Whether a terminal would act on the character, or show nothing, in a body."""
    return char not in _KEPT and _marked(char)


def visible(text: str) -> str:
    """A free-text body (a description, a note, a message) for a reader: its line breaks
    and tabs kept, every other control or invisible character shown as a mark.

    C0 controls (ESC, CR, BEL, ...) and DEL become their Unicode control pictures (␛, ␍, ␇,
    ␡); C1 controls, bidi overrides and invisible format characters become `\\x9b`,
    `\\u202e`, `\\u200b`, `\\U000e0041`.
    """
    if _nothing_to_mark(text.replace("\n", "").replace("\t", "")):
        return text
    return "".join(_shown(c) if is_control(c) else c for c in text)


def one_line(text: str) -> str:
    """Text that must stay one line (a title, a name, a cell, an error, a prompt, a log
    message): as `visible`, and a line break shown as `␊` too, so it cannot start a line.
    """
    if _nothing_to_mark(text):
        return text
    return "".join(_shown(c) if _marked(c) else c for c in text)


def lines_under(lines: Sequence[str], indent: str = "    ") -> str:
    """Several lines of our own (an error listing each problem of a playbook, a log message
    and its details) as one block: each line kept on one line (`one_line`, so a name quoted
    in it cannot start another) and every line after the first indented under it, as a
    body is under its label.
    """
    first, *rest = [one_line(line) for line in lines] or [""]
    return "\n".join([first, *(indent + line for line in rest)])


def chat_text(text: str) -> str:
    """Text for chat tools that parse `<...>` as links and mentions (Slack's rule).

    Only `&`, `<` and `>` are control characters there; entity-encoding them shows
    `<!channel>` or `<http://x|click>` as typed instead of notifying a channel or hiding a
    link behind a label.
    """
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
