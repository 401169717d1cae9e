"""A service's sentence is written once, in English, and read in the reader's language: the
terminal prints the English as it always did, the console says it from its catalog with
the same values."""

from __future__ import annotations

import pickle

from edrtrial.errors import ActionRefused, TicketError
from edrtrial.web import i18n
from edrtrial.words import Words, said


def test_words_are_the_english_sentence_wherever_text_is_used() -> None:
    words = Words("%(device)s is already isolated", device="pc-001")
    assert words == "pc-001 is already isolated" and isinstance(words, str)
    assert f"refused: {words}" == "refused: pc-001 is already isolated"
    assert str(ActionRefused(words)) == "pc-001 is already isolated"
    assert Words("say who the ticket goes to") == "say who the ticket goes to"
    again = pickle.loads(pickle.dumps(words))
    assert isinstance(again, Words) and again.values == {"device": "pc-001"}


def test_the_console_says_them_in_the_person_s_language_with_the_values_as_they_came() -> None:
    hostile = "<b>pc-001</b>"
    err = ActionRefused(Words("%(device)s is already isolated", device=hostile))
    assert said(err) is err.args[0]
    assert i18n.language() == "ja"
    assert i18n.say(err) == "<b>pc-001</b> はすでに隔離されています"  # escaped where shown
    i18n.set_language("en")
    try:
        assert i18n.say(err) == "<b>pc-001</b> is already isolated"
    finally:
        i18n.set_language("ja")


def test_a_sentence_made_of_sentences_is_said_whole_and_other_text_stays_english() -> None:
    inner = Words("%(device)s is already isolated", device="pc-001")
    outer = TicketError(
        Words("resolving needs the incident summary; missing: %(missing)s", missing=inner)
    )
    assert (
        i18n.say(outer)
        == "解決にはインシデントの概要が必要です。未記入: pc-001 はすでに隔離されています"
    )
    assert i18n.say(TicketError("an EDR's own words")) == "an EDR's own words"
    assert i18n.say(ValueError("bad value")) == "bad value"
