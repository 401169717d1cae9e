"""The console's two languages: Japanese (the default) and English.

Messages are written in English in the templates and code (`_("Queue")`) and translated
from the catalogs in `locale/ja/LC_MESSAGES/` (one `.po` file per part of the console:
`messages.po` for what all pages share, `desk.po`, `programme.po`, ...), merged and
compiled in memory at start with Babel (no compiled file is kept beside its source).
The language of the request in hand is a context variable, so a template, a page and
a message all speak it without passing it around. Dates and times are shown in Tokyo
time.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from edrtrial.timeutil import JST, as_utc
from edrtrial.words import Words, said

LANGUAGES = ("ja", "en")
DEFAULT = "ja"

_language: ContextVar[str] = ContextVar("edrtrial_web_language", default=DEFAULT)


@cache
def translations(language: str) -> NullTranslations:
    """The compiled catalog of `language` (English is the messages themselves)."""
    if language == "en":
        return NullTranslations()
    folder = resources.files("edrtrial.web").joinpath(f"locale/{language}/LC_MESSAGES")
    with folder.joinpath("messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    for source in sorted(folder.iterdir(), key=lambda found: found.name):
        if source.name.endswith(".po") and source.name != "messages.po":
            with source.open("rb") as po:
                for message in read_po(po, locale=language):
                    if message.id:
                        catalog[message.id] = message
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


def set_language(language: str) -> None:
    """Speak `language` for the rest of this request (an unknown one: the default)."""
    _language.set(language if language in LANGUAGES else DEFAULT)


def language() -> str:
    """The language of the request in hand."""
    return _language.get()


def gettext(message: str, **values: Any) -> str:
    """`message` in the request's language, with `%(name)s` values filled in."""
    text = translations(language()).gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, n: int, **values: Any) -> str:
    """The singular or plural form for `n`, in the request's language."""
    text = translations(language()).ngettext(singular, plural, n)
    values.setdefault("num", n)
    return text % values


_ = gettext


def say(message: object) -> str:
    """What a service said (its error, or its `Words`) in the request's language: the
    pattern from the catalogs with the same values filled in (a value that is `Words` is
    said too). Anything else stays as the service wrote it, in English."""
    found = said(message)
    if not isinstance(found, Words):
        return str(found)
    values = {k: say(v) if isinstance(v, Words) else v for k, v in found.values.items()}
    text = translations(language()).gettext(found.pattern)
    return text % values if values else text


def N_(message: str) -> str:  # noqa: N802  (the gettext tools' name for it)
    """Mark `message` for the catalog where it is made; it is translated where shown."""
    return message


def when(value: datetime | None, *, seconds: bool = False) -> str:
    """An instant in Tokyo time, as the request's language writes it; "" for none."""
    if value is None:
        return ""
    local = as_utc(value).astimezone(JST)
    # Digits only, the same in both languages: strftime, far faster than Babel's formatter
    # (a queue of 200 rows shows 400 instants).
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def span(delta: timedelta) -> str:
    """A duration the way a person says it: `3 d 4 h`, `2 h 05 min`, `12 min` (ja:
    `3日4時間`, `2時間05分`, `12分`)."""
    minutes = max(int(abs(delta).total_seconds()) // 60, 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return gettext("%(d)s d %(h)s h", d=days, h=hours)
    if hours:
        return gettext("%(h)s h %(m)02d min", h=hours, m=mins)
    return gettext("%(m)s min", m=mins)


def time_left(deadline: datetime | None, now: datetime) -> str:
    """What is left before a deadline (`1 h 20 min left`) or how far past it it is."""
    if deadline is None:
        return ""
    delta = as_utc(deadline) - as_utc(now)
    if delta.total_seconds() >= 0:
        return gettext("%(span)s left", span=span(delta))
    return gettext("overdue by %(span)s", span=span(delta))
