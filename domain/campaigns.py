"""Who a campaign reaches, and when, as plain functions over plain data.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
>>> decide("sms", Reach(phone="+33612345678", sms_consent="subscribed", time_zone="Europe/Paris"), at)
Decision(action='wait', reason=None, at=datetime.datetime(2026, 6, 2, 6, 0, tzinfo=datetime.timezone.utc))
>>> decide("email", Reach(email=None), at)
Decision(action='skip', reason='no_email', at=None)
>>> decide("email", Reach(email="a@example.com", time_zone="Asia/Tokyo"), at).action   # 05:00 there
'wait'
>>> decide("web_widget", Reach(), at).action
'send'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.identity import MESSENGER_PREFIX
from domain.schedule import next_quiet_hours_end


@dataclass(frozen=True)
class Reach:
    """What of a contact decides whether a channel can reach it."""

    blocked: bool = False
    email: str | None = None
    phone: str | None = None
    sms_consent: str = "never"
    time_zone: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # "send", "skip" (reason) or "wait" (until at)
    reason: str | None = None
    at: datetime | None = None


SEND = Decision("send")


# Channels that reach the contact where they are (a phone, an inbox): quiet hours apply.
# Widget and SDK messages wait in the conversation, and their push notifications keep
# quiet hours of their own (jobs/push.py).
QUIET_HOURS_KINDS = frozenset({"email", "sms", "messenger"})


def decide(channel_kind: str, contact: Reach, now: datetime) -> Decision:
    """Blocked contacts are skipped on every channel; e-mail needs an address; SMS needs
    a number and the contact's consent; messenger needs the contact's messenger id. E-mail,
    SMS and messenger wait out quiet hours (08:00–20:00 in the contact's time zone, UTC
    when unknown). Widget and SDK reach every contact (the message waits in their
    conversation)."""
    if contact.blocked:
        return Decision("skip", "blocked")
    reason = _unreachable(channel_kind, contact)
    if reason is not None:
        return Decision("skip", reason)
    if channel_kind in QUIET_HOURS_KINDS:
        opens = next_quiet_hours_end(now, contact.time_zone)
        if opens > now:
            return Decision("wait", at=opens)
    return SEND


def _unreachable(channel_kind: str, contact: Reach) -> str | None:
    """Why the channel cannot reach the contact at all (a skip reason), else None."""
    if channel_kind == "email" and not contact.email:
        return "no_email"
    if channel_kind == "sms":
        if contact.sms_consent != "subscribed":
            return "no_sms_consent"
        if not contact.phone:
            return "no_phone"
    if channel_kind == "messenger" and not (contact.external_id or "").startswith(MESSENGER_PREFIX):
        return "no_messenger_id"
    return None
