"""The console speaks Japanese by default and English on request: every message in its
templates and code has its Japanese in the catalog, with the same placeholders."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import edrtrial
import edrtrial.web
from edrtrial.web import i18n

WEB = Path(edrtrial.web.__file__).parent
PACKAGE = Path(edrtrial.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)")


def messages() -> dict[str, str]:
    """Every message the console's code and templates ask to translate, and every sentence
    a service says as `Words` (anywhere in the package), with where."""
    found: dict[str, str] = {}
    method_map = [("**.py", "python"), ("templates/**.j2", "jinja2.ext:babel_extract")]
    options = {"templates/**.j2": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true"}}
    extracted = [
        extract_from_dir(str(WEB), method_map, options_map=options, keywords=KEYWORDS),
        extract_from_dir(str(PACKAGE), [("**.py", "python")], keywords={"Words": None}),
    ]
    for source in extracted:
        for filename, line, message, _comments, _context in source:
            for text in message if isinstance(message, tuple) else (message,):
                if text:
                    found.setdefault(text, f"{filename}:{line}")
    return found


def catalog() -> dict[str, str]:
    """Every catalog of the console's Japanese, merged (a message in two of them is a
    mistake: one place for each)."""
    folder = resources.files("edrtrial.web").joinpath("locale/ja/LC_MESSAGES")
    found: dict[str, str] = {}
    for source in folder.iterdir():
        if not source.name.endswith(".po"):
            continue
        with source.open("rb") as po:
            read = read_po(po, locale="ja")
        for m in read:
            if not m.id:
                continue
            key = m.id if isinstance(m.id, str) else m.id[0]
            assert key not in found, f"{key!r} is in two catalogs"
            found[key] = m.string if isinstance(m.string, str) else m.string[0]
    return found


def test_every_message_of_the_console_has_its_japanese() -> None:
    found, japanese = messages(), catalog()
    assert len(found) > 20
    missing = [f"{where}: {text!r}" for text, where in found.items() if not japanese.get(text)]
    assert missing == []


def test_no_catalog_says_one_message_twice() -> None:
    """Babel keeps one of two entries of a message in a catalog, silently: the other's
    Japanese would never be shown."""
    folder = resources.files("edrtrial.web").joinpath("locale/ja/LC_MESSAGES")
    for source in folder.iterdir():
        if source.name.endswith(".po"):
            text = source.read_text(encoding="utf-8")
            ids = re.findall(r'^msgid ((?:".*"\n)+)msgstr', text, re.MULTILINE)
            seen = [i for i in ids if i != '""\n']
            assert len(seen) == len(set(seen)), source.name


def test_the_japanese_keeps_every_placeholder() -> None:
    for english, japanese in catalog().items():
        assert set(PLACEHOLDER.findall(english)) == set(PLACEHOLDER.findall(japanese)), english


def test_english_is_the_messages_themselves_and_japanese_the_default() -> None:
    assert i18n.language() == "ja"
    assert i18n.gettext("Sign in") == "サインイン"
    i18n.set_language("en")
    try:
        assert i18n.gettext("Sign in") == "Sign in"
        assert i18n.gettext("%(span)s left", span="5 min") == "5 min left"
    finally:
        i18n.set_language("ja")
