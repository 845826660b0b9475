"""Keywords in inbound SMS: the compliance keywords carriers require us to honour.

A message is a keyword only when it is nothing but the keyword: trimmed, in any case,
with any trailing punctuation. "please stop texting me" is a message for an agent.

    >>> classify(" Stop! ")
    <Keyword.STOP: 'stop'>
    >>> classify("please stop texting me") is None
    True
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"  # remove SMS consent and confirm with DEFAULT_STOP_REPLY
    START = "start"  # give it back and confirm with DEFAULT_START_REPLY
    HELP = "help"  # answer with the channel's help reply, or DEFAULT_HELP_REPLY


KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(("stop", "stopall", "unsubscribe", "cancel", "end", "quit"), Keyword.STOP),
    **dict.fromkeys(("start", "join", "unstop"), Keyword.START),
    **dict.fromkeys(("help", "info"), Keyword.HELP),
}

DEFAULT_STOP_REPLY = "You have been unsubscribed and will receive no more messages. Reply START to resubscribe."
DEFAULT_START_REPLY = "You have been resubscribed and will receive messages again. Reply STOP to unsubscribe."
DEFAULT_HELP_REPLY = "Reply STOP to unsubscribe or START to resubscribe. Msg & data rates may apply."


def classify(text: str) -> Keyword | None:
    """The keyword the whole of `text` is, if any. Compatibility forms are folded first,
    so a full-width "ＳＴＯＰ" is STOP too.

        >>> classify("unsubscribe."), classify("JOIN"), classify("info?"), classify("stop all")
        (<Keyword.STOP: 'stop'>, <Keyword.START: 'start'>, <Keyword.HELP: 'help'>, None)
    """
    word = unicodedata.normalize("NFKC", text).strip()
    end = len(word)
    while end and (word[end - 1].isspace() or unicodedata.category(word[end - 1]).startswith("P")):
        end -= 1
    return KEYWORDS.get(word[:end].casefold())
