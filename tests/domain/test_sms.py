"""Inbound SMS keywords: only a message that is nothing but the keyword counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.sms import DEFAULT_HELP_REPLY, DEFAULT_START_REPLY, DEFAULT_STOP_REPLY, KEYWORDS, Keyword, classify


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        *((word, Keyword.STOP) for word in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")),
        *((word, Keyword.START) for word in ("START", "JOIN", "UNSTOP")),
        *((word, Keyword.HELP) for word in ("HELP", "INFO")),
        ("stop", Keyword.STOP),
        ("Stop", Keyword.STOP),
        ("  sToP \n", Keyword.STOP),
        ("STOP.", Keyword.STOP),
        ("Stop!!!", Keyword.STOP),
        ("stop !", Keyword.STOP),
        ("Unsubscribe…", Keyword.STOP),
        ("ＳＴＯＰ", Keyword.STOP),  # full width
        ("help?", Keyword.HELP),
        ("Info.", Keyword.HELP),
        ("join!", Keyword.START),
    ],
)
def test_keywords(text: str, keyword: Keyword) -> None:
    assert classify(text) is keyword


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "stop it",
        "STOP ALL",
        "stop stop",
        "!stop",  # only trailing punctuation goes
        "s.t.o.p",
        "yes",  # not a keyword here
        "y",
        "stopp",
        "helpful",
        "I need help",
        "",
        "   ",
        "...",
    ],
)
def test_anything_else_is_a_message(text: str) -> None:
    assert classify(text) is None


def test_every_keyword_word_is_listed_once_in_lower_case() -> None:
    assert all(word == word.lower() for word in KEYWORDS)
    assert set(KEYWORDS.values()) == set(Keyword)


def test_default_replies_fit_one_sms_and_say_how_to_answer() -> None:
    for reply in (DEFAULT_HELP_REPLY, DEFAULT_STOP_REPLY, DEFAULT_START_REPLY):
        assert len(reply) <= 160 and reply.isascii()
    assert "STOP" in DEFAULT_HELP_REPLY and "START" in DEFAULT_STOP_REPLY and "STOP" in DEFAULT_START_REPLY


@given(st.text(max_size=300))
def test_classify_never_fails(text: str) -> None:
    result = classify(text)
    assert result is None or result in Keyword
