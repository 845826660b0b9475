"""Who a campaign reaches, and when, as plain functions over plain data.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
>>> decide("sms", Reach(phone="+33612345678", sms_consent="subscribed", time_zone="Europe/Paris"), at)
Decision(action='wait', reason=None, at=datetime.datetime(2026, 6, 2, 6, 0, tzinfo=datetime.timezone.utc))
>>> decide("email", Reach(email=None), at)
Decision(action='skip', reason='no_email', at=None)
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


def decide(channel_kind: str, contact: Reach, now: datetime) -> Decision:
    """Blocked contacts are skipped on every channel; e-mail needs an address; SMS needs
    a number and the contact's consent, and waits out quiet hours (08:00–20:00 in the
    contact's time zone, UTC when unknown); messenger needs the contact's messenger id.
    Widget and SDK reach every contact (the message waits in their conversation)."""
    if contact.blocked:
        return Decision("skip", "blocked")
    if channel_kind == "email":
        return SEND if contact.email else Decision("skip", "no_email")
    if channel_kind == "sms":
        if contact.sms_consent != "subscribed":
            return Decision("skip", "no_sms_consent")
        if not contact.phone:
            return Decision("skip", "no_phone")
        opens = next_quiet_hours_end(now, contact.time_zone)
        return SEND if opens <= now else Decision("wait", at=opens)
    if channel_kind == "messenger":
        ok = contact.external_id is not None and contact.external_id.startswith(MESSENGER_PREFIX)
        return SEND if ok else Decision("skip", "no_messenger_id")
    return SEND
