"""Attribution of replies to outreach, as plain functions.

A reply is credited to the newest campaign or proactive message the contact received when
it arrives within the attribution window of it and is the first reply since:

    >>> from datetime import UTC, datetime, timedelta
    >>> sent = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    >>> attributable(sent, None, sent + timedelta(hours=23), timedelta(hours=24))
    True
    >>> attributable(sent, None, sent + timedelta(hours=25), timedelta(hours=24))
    False
    >>> attributable(sent, sent + timedelta(hours=1), sent + timedelta(hours=2), timedelta(hours=24))
    False
    >>> parse_source(source_key("campaign", 12))
    ('campaign', 12)
"""

from __future__ import annotations

from datetime import datetime, timedelta

SOURCE_KINDS = ("campaign", "proactive")
DEFAULT_WINDOW_HOURS = 24
MAX_WINDOW_HOURS = 24 * 30


def source_key(kind: str, source_id: int) -> str:
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown outreach kind {kind!r}")
    return f"{kind}:{source_id}"


def parse_source(source: str) -> tuple[str, int]:
    kind, _, number = source.partition(":")
    if kind not in SOURCE_KINDS or not number.isdigit():
        raise ValueError(f"not an outreach source: {source!r}")
    return kind, int(number)


def attributable(sent_at: datetime, replied_at: datetime | None, reply_at: datetime, window: timedelta) -> bool:
    """The reply at `reply_at` is credited to a receipt sent at `sent_at`."""
    return replied_at is None and sent_at <= reply_at <= sent_at + window
