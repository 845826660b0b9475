"""Who a campaign reaches and when (domain/campaigns.py), without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.campaigns import Decision, Reach, decide

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TEXTABLE = Reach(phone="+33612345678", sms_consent="subscribed", time_zone="Europe/Paris")


@pytest.mark.parametrize("kind", ["web_widget", "mobile_sdk", "email", "sms", "messenger"])
def test_blocked_contacts_are_skipped_on_every_channel(kind: str) -> None:
    reach = Reach(
        blocked=True, email="a@example.com", phone="+33612345678", sms_consent="subscribed", external_id="messenger:1"
    )
    assert decide(kind, reach, NOON) == Decision("skip", "blocked")


def test_each_channel_needs_its_address() -> None:
    assert decide("email", Reach(email="a@example.com"), NOON).action == "send"
    assert decide("email", Reach(), NOON) == Decision("skip", "no_email")
    assert decide("messenger", Reach(external_id="messenger:42"), NOON).action == "send"
    assert decide("messenger", Reach(external_id="crm-42"), NOON) == Decision("skip", "no_messenger_id")
    assert decide("web_widget", Reach(), NOON).action == "send"


def test_sms_needs_consent_then_a_number() -> None:
    assert decide("sms", TEXTABLE, NOON).action == "send"
    for consent in ("never", "unsubscribed"):
        assert decide("sms", Reach(phone="+33612345678", sms_consent=consent), NOON) == Decision(
            "skip", "no_sms_consent"
        )
    assert decide("sms", Reach(sms_consent="subscribed"), NOON) == Decision("skip", "no_phone")


@pytest.mark.parametrize(
    ("utc_hour", "expected"),
    [
        (6, datetime(2026, 3, 10, 7, 0, tzinfo=UTC)),  # 07:00 in Paris (UTC+1): waits until 08:00
        (7, None),  # 08:00 there: sent
        (18, None),  # 19:00
        (19, datetime(2026, 3, 11, 7, 0, tzinfo=UTC)),  # 20:00 there: tomorrow 08:00
        (23, datetime(2026, 3, 11, 7, 0, tzinfo=UTC)),  # midnight
    ],
)
def test_sms_waits_out_quiet_hours_in_the_contacts_time_zone(utc_hour: int, expected: datetime | None) -> None:
    decision = decide("sms", TEXTABLE, NOON.replace(hour=utc_hour))
    assert decision == (Decision("send") if expected is None else Decision("wait", at=expected))


def test_an_unknown_time_zone_counts_as_utc() -> None:
    reach = Reach(phone="+33612345678", sms_consent="subscribed", time_zone=None)
    assert decide("sms", reach, NOON.replace(hour=21)) == Decision("wait", at=datetime(2026, 3, 11, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("kind", "reach"),
    [
        ("email", Reach(email="a@example.com", time_zone="Europe/Paris")),
        ("messenger", Reach(external_id="messenger:42", time_zone="Europe/Paris")),
        ("sms", TEXTABLE),
    ],
)
def test_every_channel_that_reaches_a_person_waits_out_their_quiet_hours(kind: str, reach: Reach) -> None:
    at_night = NOON.replace(hour=22)  # 23:00 in Paris
    assert decide(kind, reach, at_night) == Decision("wait", at=datetime(2026, 3, 11, 7, 0, tzinfo=UTC))
    assert decide(kind, reach, NOON).action == "send"
    # Skips come first: a contact the channel cannot reach does not wait to be skipped.
    assert decide(kind, Reach(time_zone="Europe/Paris"), at_night).action == "skip"


@pytest.mark.parametrize("kind", ["web_widget", "mobile_sdk"])
def test_in_app_messages_do_not_wait(kind: str) -> None:
    assert decide(kind, Reach(time_zone="Europe/Paris"), NOON.replace(hour=23)) == Decision("send")
