"""Untrusted text made safe for each place it is shown: data, never markup or control.

Everything an EDR sends (alert titles, descriptions, device, user and file names, command
lines, URLs) and everything an operator types reaches terminals, chat cards and mail. Each
output has its own rule, and each rule lives here so that there is one place to read it:

- a terminal: every control character is made visible (`visible`), so an escape sequence
  cannot clear the screen, plant an OSC 8 hyperlink, move the cursor (`\\r`) or reverse what
  the operator reads (a bidi override). Rich markup is switched off where the CLI prints.
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

import unicodedata

# Bidirectional formatting characters: they reorder what follows on the screen, so
# "invoice‮fdp.exe" reads as "invoiceexe.pdf".
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_KEPT = frozenset("\n\t")  # a line break and a tab are text, not control
_CONTROL_PICTURES = 0x2400  # U+2400..U+241F picture U+0000..U+001F, U+2421 pictures DEL


def _shown(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(_CONTROL_PICTURES + code)  # "\x1b" -> "␛", "\r" -> "␍"
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def is_control(char: str) -> bool:
    """Whether a terminal would act on the character rather than show it."""
    if char in _KEPT:
        return False
    return unicodedata.category(char) == "Cc" or char in _BIDI or char in "\u2028\u2029"


def visible(text: str) -> str:
    """The text with every control character shown as a visible mark, for a terminal.

    C0 controls (ESC, CR, BEL, ...) and DEL become their Unicode control pictures (␛, ␍, ␇,
    ␡); C1 controls and bidi overrides become `\\x9b` / `\\u202e`. Line breaks and tabs stay.
    """
    if not any(is_control(c) for c in text):
        return text
    return "".join(_shown(c) if is_control(c) else c for c in text)


def chat_text(text: str) -> str:
    """Text for chat tools that parse `<...>` as links and mentions (Slack's rule).

    Only `&`, `<` and `>` are control characters there; entity-encoding them shows
    `<!channel>` or `<http://x|click>` as typed instead of notifying a channel or hiding a
    link behind a label.
    """
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
