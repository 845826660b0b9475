"""Business hours, snooze presets and quiet hours, in zones east and west of UTC and across
DST changes (Europe/Paris: clocks go forward on 2026-03-29 at 01:00 UTC and back on
2026-10-25 at 01:00 UTC; America/New_York: forward on 2026-03-08 at 07:00 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.schedule import (
    DAYS,
    BusinessHours,
    ScheduleError,
    SnoozePreset,
    in_quiet_hours,
    next_quiet_hours_end,
    snooze_until,
)

PARIS, NEW_YORK, TOKYO = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """An instant given on the wall clock in `zone`, in UTC."""
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)


def hours(zone: str = "Europe/Paris", **days: list[list[str]]) -> BusinessHours:
    return BusinessHours.parse({"timeZone": zone, "days": days})


OFFICE = hours(**{day: [["09:00", "12:00"], ["13:00", "17:00"]] for day in DAYS[:5]})


# -- parse and to_dict ----------------------------------------------------------------------


def test_to_dict_is_normalised_and_parses_back_to_the_same_schedule() -> None:
    schedule = hours("America/New_York", tue=[["13:00", "17:00"], ["9:00", "12:00"]], sat=[["10:00", "24:00"]])
    data = schedule.to_dict()
    assert data == {
        "timeZone": "America/New_York",
        "days": {
            "mon": [],
            "tue": [["09:00", "12:00"], ["13:00", "17:00"]],
            "wed": [],
            "thu": [],
            "fri": [],
            "sat": [["10:00", "24:00"]],
            "sun": [],
        },
    }
    assert BusinessHours.parse(data) == schedule


def test_touching_intervals_and_empty_days_are_fine() -> None:
    schedule = hours(mon=[["09:00", "12:00"], ["12:00", "17:00"]], tue=[], wed=None)  # type: ignore[arg-type]
    assert schedule.to_dict()["days"]["mon"] == [["09:00", "12:00"], ["12:00", "17:00"]]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("9 to 5", ""),
        ({"timezone": "Europe/Paris", "days": {}}, "timezone"),
        ({"days": {}}, "timeZone"),
        ({"timeZone": "Mars/Olympus_Mons", "days": {}}, "timeZone"),
        ({"timeZone": "europe/paris", "days": {}}, "timeZone"),
        ({"timeZone": "localtime", "days": {}}, "timeZone"),
        ({"timeZone": "../../etc/passwd", "days": {}}, "timeZone"),
        ({"timeZone": 1, "days": {}}, "timeZone"),
        ({"timeZone": "UTC"}, "days"),
        ({"timeZone": "UTC", "days": [["09:00", "17:00"]]}, "days"),
        ({"timeZone": "UTC", "days": {"monday": []}}, "days.monday"),
        ({"timeZone": "UTC", "days": {"Mon": []}}, "days.Mon"),
        ({"timeZone": "UTC", "days": {"mon": "09:00-17:00"}}, "days.mon"),
        ({"timeZone": "UTC", "days": {"mon": [["09:00", "17:00", "18:00"]]}}, "days.mon[0]"),
        ({"timeZone": "UTC", "days": {"mon": [["09:00"]]}}, "days.mon[0]"),
        ({"timeZone": "UTC", "days": {"mon": [[9, 17]]}}, "days.mon[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["09:00", "12:00"], ["1pm", "17:00"]]}}, "days.tue[1]"),
        ({"timeZone": "UTC", "days": {"tue": [["09:00", "25:00"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["09:00", "24:30"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["09:60", "12:00"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["09:00", "9:00"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["17:00", "09:00"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"tue": [["24:00", "24:00"]]}}, "days.tue[0]"),
        ({"timeZone": "UTC", "days": {"wed": [["13:00", "17:00"], ["09:00", "13:01"]]}}, "days.wed[0]"),
        ({"timeZone": "UTC", "days": {"wed": [["09:00", "17:00"], ["10:00", "11:00"]]}}, "days.wed[1]"),
        ({"timeZone": "UTC", "days": {"sun": [[f"{h:02d}:00", f"{h:02d}:30"] for h in range(13)]}}, "days.sun"),
    ],
)
def test_parse_errors_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        BusinessHours.parse(data)
    assert caught.value.field == field
    assert caught.value.message


def test_error_path() -> None:
    assert ScheduleError("days.mon[0]", "x").path == ["days", "mon", "0"]
    assert ScheduleError("timeZone", "x").path == ["timeZone"]
    assert ScheduleError("", "x").path == []


# -- is_open and next_open ------------------------------------------------------------------


def test_is_open_follows_the_local_wall_clock() -> None:
    # Monday 2026-06-01, Paris is UTC+2.
    assert not OFFICE.is_open(local(PARIS, 2026, 6, 1, 8, 59, 59))
    assert OFFICE.is_open(local(PARIS, 2026, 6, 1, 9, 0))
    assert OFFICE.is_open(local(PARIS, 2026, 6, 1, 11, 59, 59))
    assert not OFFICE.is_open(local(PARIS, 2026, 6, 1, 12, 0))
    assert OFFICE.is_open(local(PARIS, 2026, 6, 1, 13, 0))
    assert not OFFICE.is_open(local(PARIS, 2026, 6, 1, 17, 0))
    assert not OFFICE.is_open(local(PARIS, 2026, 6, 6, 10, 0))  # Saturday
    assert OFFICE.is_open(utc(2026, 6, 1, 7, 0))
    assert OFFICE.is_open(datetime(2026, 6, 1, 3, 0, tzinfo=NEW_YORK))  # 09:00 in Paris


def test_the_weekday_is_the_local_one() -> None:
    tokyo = hours("Asia/Tokyo", mon=[["08:00", "10:00"]])
    los_angeles = hours("America/Los_Angeles", sun=[["20:00", "24:00"]])
    # Sunday 23:30 UTC is Monday 08:30 in Tokyo and Sunday 16:30 in Los Angeles.
    assert tokyo.is_open(utc(2026, 5, 31, 23, 30))
    assert not los_angeles.is_open(utc(2026, 5, 31, 23, 30))
    # Monday 03:00 UTC is Sunday 20:00 in Los Angeles.
    assert los_angeles.is_open(utc(2026, 6, 1, 3, 0))
    assert los_angeles.next_open(utc(2026, 5, 31, 23, 30)) == utc(2026, 6, 1, 3, 0)


def test_until_midnight_and_on_after_it() -> None:
    night = hours("UTC", fri=[["22:00", "24:00"]], sat=[["00:00", "02:00"]])
    assert night.is_open(utc(2026, 6, 5, 23, 59, 59))
    assert night.is_open(utc(2026, 6, 6, 0, 0))
    assert night.is_open(utc(2026, 6, 6, 1, 59))
    assert not night.is_open(utc(2026, 6, 6, 2, 0))
    assert night.next_open(utc(2026, 6, 6, 2, 0)) == utc(2026, 6, 12, 22, 0)


def test_next_open() -> None:
    monday_10 = local(PARIS, 2026, 6, 1, 10, 0)
    assert OFFICE.next_open(monday_10) == monday_10
    assert OFFICE.next_open(local(PARIS, 2026, 6, 1, 12, 30)) == local(PARIS, 2026, 6, 1, 13, 0)
    assert OFFICE.next_open(local(PARIS, 2026, 6, 1, 6, 0)) == local(PARIS, 2026, 6, 1, 9, 0)
    assert OFFICE.next_open(local(PARIS, 2026, 6, 5, 17, 0)) == local(PARIS, 2026, 6, 8, 9, 0)  # Friday → Monday
    assert OFFICE.next_open(local(PARIS, 2026, 6, 7, 23, 59, 59)) == local(PARIS, 2026, 6, 8, 9, 0)
    assert OFFICE.next_open(monday_10.astimezone(TOKYO)).tzinfo is UTC  # type: ignore[union-attr]


def test_a_schedule_without_intervals_never_opens() -> None:
    assert hours().next_open(utc(2026, 6, 1)) is None
    assert not hours().is_open(utc(2026, 6, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        OFFICE.is_open(datetime(2026, 6, 1, 9, 0))


def test_across_a_week_with_a_dst_change() -> None:
    # Friday 17:00 CET to Monday 09:00 CEST: 64 hours on the wall clock, 63 in fact.
    friday = local(PARIS, 2026, 3, 27, 17, 0)
    assert OFFICE.next_open(friday) == utc(2026, 3, 30, 7, 0) == friday + timedelta(hours=63)
    # And back in October: 65 hours.
    friday = local(PARIS, 2026, 10, 23, 17, 0)
    assert OFFICE.next_open(friday) == utc(2026, 10, 26, 8, 0) == friday + timedelta(hours=65)


def test_an_interval_starting_in_the_skipped_hour_opens_when_the_clocks_jump() -> None:
    schedule = hours(sun=[["02:30", "05:00"]])
    assert schedule.next_open(utc(2026, 3, 29, 0, 0)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert schedule.is_open(utc(2026, 3, 29, 1, 0))
    assert not schedule.is_open(utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET


def test_an_interval_wholly_in_the_skipped_hour_waits_a_week() -> None:
    schedule = hours(sun=[["02:00", "02:30"]])
    assert schedule.next_open(utc(2026, 3, 28, 12, 0)) == local(PARIS, 2026, 4, 5, 2, 0) == utc(2026, 4, 5, 0, 0)


def test_the_repeated_hour_opens_twice() -> None:
    schedule = hours(sun=[["02:15", "02:45"]])
    first, second = local(PARIS, 2026, 10, 25, 2, 15), local(PARIS, 2026, 10, 25, 2, 15, fold=1)
    assert (first, second) == (utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 1, 15))
    assert schedule.next_open(utc(2026, 10, 24, 12, 0)) == first
    assert schedule.next_open(first + timedelta(minutes=35)) == second


def test_the_clocks_going_back_into_an_interval_reopen_it() -> None:
    schedule = hours(sun=[["01:00", "02:30"]])
    # Closed from 02:30 CEST (00:30 UTC) until 03:00 CEST becomes 02:00 CET (01:00 UTC).
    assert not schedule.is_open(utc(2026, 10, 25, 0, 40))
    assert schedule.next_open(utc(2026, 10, 25, 0, 40)) == utc(2026, 10, 25, 1, 0)


def test_dst_west_of_utc() -> None:
    schedule = hours("America/New_York", sun=[["02:30", "04:00"]], mon=[["09:00", "17:00"]])
    # 2026-03-08 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    assert schedule.next_open(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 0)
    assert schedule.next_open(utc(2026, 3, 8, 9, 0)) == local(NEW_YORK, 2026, 3, 9, 9, 0) == utc(2026, 3, 9, 13, 0)


ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "America/St_Johns", "UTC"]
clock = st.integers(0, 24 * 4).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")


@st.composite
def schedules(draw: st.DrawFn) -> BusinessHours:
    days: dict[str, list[list[str]]] = {}
    for day in draw(st.lists(st.sampled_from(DAYS), min_size=1, unique=True)):
        marks = sorted(draw(st.sets(clock, min_size=2, max_size=6)))
        days[day] = [marks[i : i + 2] for i in range(0, len(marks) - 1, 2)]
    return BusinessHours.parse({"timeZone": draw(st.sampled_from(ZONES)), "days": days})


# Around the 2026 DST changes of the zones above, on whole minutes.
instants = st.sampled_from(
    [
        utc(2026, 3, 7),
        utc(2026, 3, 27),
        utc(2026, 4, 3),
        utc(2026, 10, 2),
        utc(2026, 10, 23),
        utc(2026, 10, 30),
        utc(2026, 6, 1),
    ]
).flatmap(lambda base: st.integers(0, 4 * 24 * 60).map(lambda m: base + timedelta(minutes=m)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), instants)
def test_next_open_is_the_first_open_minute(schedule: BusinessHours, at: datetime) -> None:
    opening = schedule.next_open(at)
    assert opening is not None and opening >= at and schedule.is_open(opening)
    # Every zone here changes its offset on a whole minute, so a minute-by-minute walk
    # finds the same opening.
    walk = at
    while not schedule.is_open(walk):
        walk += timedelta(minutes=1)
    assert opening == walk


# -- snooze presets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 6, 1, 10, 0), utc(2026, 6, 1, 14, 0)),
        (utc(2026, 6, 1, 10, 0, 0, 1), utc(2026, 6, 1, 14, 15)),
        (utc(2026, 6, 1, 10, 1), utc(2026, 6, 1, 14, 15)),
        (utc(2026, 6, 1, 10, 14, 59), utc(2026, 6, 1, 14, 15)),
        (utc(2026, 6, 1, 10, 45), utc(2026, 6, 1, 14, 45)),
        (utc(2026, 6, 1, 10, 46), utc(2026, 6, 1, 15, 0)),
        (utc(2026, 6, 1, 21, 50), utc(2026, 6, 2, 2, 0)),  # later wins over today
    ],
)
def test_later_today(now: datetime, expected: datetime) -> None:
    assert snooze_until(SnoozePreset.LATER_TODAY, now, "Asia/Kolkata") == expected


def test_later_today_keeps_quarter_hours_in_an_offset_zone() -> None:
    # Kathmandu is UTC+05:45; a quarter hour in UTC is a quarter hour there too.
    woke = snooze_until(SnoozePreset.LATER_TODAY, utc(2026, 6, 1, 10, 7), "Asia/Kathmandu")
    assert woke.astimezone(ZoneInfo("Asia/Kathmandu")).minute % 15 == 0


def test_tomorrow_is_nine_in_the_morning_the_next_local_day() -> None:
    # 01:30 on 2 June in Paris: tomorrow is 3 June.
    assert snooze_until(SnoozePreset.TOMORROW, utc(2026, 6, 1, 23, 30), "Europe/Paris") == utc(2026, 6, 3, 7, 0)
    # 20:00 on 1 June in New York: tomorrow is 2 June.
    assert snooze_until(SnoozePreset.TOMORROW, utc(2026, 6, 2, 0, 0), "America/New_York") == utc(2026, 6, 2, 13, 0)
    assert snooze_until(SnoozePreset.TOMORROW, utc(2026, 6, 1, 23, 30), "Asia/Tokyo") == utc(2026, 6, 3, 0, 0)
    # Across the change to summer time: 09:00 CEST.
    assert snooze_until(SnoozePreset.TOMORROW, utc(2026, 3, 28, 12, 0), "Europe/Paris") == utc(2026, 3, 29, 7, 0)


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        (local(PARIS, 2026, 6, 1, 8, 0), "Europe/Paris", local(PARIS, 2026, 6, 8, 9, 0)),  # Monday: the next
        (local(PARIS, 2026, 6, 7, 23, 59), "Europe/Paris", local(PARIS, 2026, 6, 8, 9, 0)),  # Sunday: tomorrow
        (local(PARIS, 2026, 6, 3, 12, 0), "Europe/Paris", local(PARIS, 2026, 6, 8, 9, 0)),
        # Monday 02:00 UTC is still Sunday in New York.
        (utc(2026, 6, 1, 2, 0), "America/New_York", local(NEW_YORK, 2026, 6, 1, 9, 0)),
        (utc(2026, 6, 1, 2, 0), "Asia/Tokyo", local(TOKYO, 2026, 6, 8, 9, 0)),
        (local(PARIS, 2026, 3, 25, 12, 0), "Europe/Paris", utc(2026, 3, 30, 7, 0)),
    ],
)
def test_next_week_is_nine_on_the_next_monday(now: datetime, zone: str, expected: datetime) -> None:
    assert snooze_until(SnoozePreset.NEXT_WEEK, now, zone) == expected


@pytest.mark.parametrize("zone", [None, "", "Nowhere/Land", "europe/paris", "localtime"])
def test_an_unknown_time_zone_is_utc(zone: str | None) -> None:
    assert snooze_until(SnoozePreset.TOMORROW, utc(2026, 6, 1, 23, 30), zone) == utc(2026, 6, 2, 9, 0)
    assert next_quiet_hours_end(utc(2026, 6, 1, 21, 0), zone) == utc(2026, 6, 2, 8, 0)


def test_presets_are_their_values_and_the_result_is_utc() -> None:
    woke = snooze_until("tomorrow", datetime(2026, 6, 1, 12, 0, tzinfo=TOKYO), "Asia/Tokyo")  # type: ignore[arg-type]
    assert woke == utc(2026, 6, 2, 0, 0) and woke.tzinfo is UTC
    with pytest.raises(ValueError):
        snooze_until("someday", utc(2026, 6, 1), "UTC")  # type: ignore[arg-type]


# -- quiet hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "wall", "quiet"),
    [
        (PARIS, (2026, 6, 1, 7, 59, 59), True),
        (PARIS, (2026, 6, 1, 8, 0), False),
        (PARIS, (2026, 6, 1, 19, 59, 59), False),
        (PARIS, (2026, 6, 1, 20, 0), True),
        (NEW_YORK, (2026, 6, 1, 8, 0), False),
        (NEW_YORK, (2026, 6, 1, 20, 0), True),
        (TOKYO, (2026, 6, 1, 0, 0), True),
        (TOKYO, (2026, 6, 1, 12, 0), False),
    ],
)
def test_quiet_hours_boundaries(zone: ZoneInfo, wall: tuple[int, ...], quiet: bool) -> None:
    at = local(zone, *wall)
    assert in_quiet_hours(at, zone.key) is quiet
    woke = next_quiet_hours_end(at, zone.key)
    if quiet:
        day = at.astimezone(zone).date() + timedelta(days=at.astimezone(zone).hour >= 20)
        assert woke == local(zone, day.year, day.month, day.day, 8, 0)
    else:
        assert woke == at


def test_next_quiet_hours_end() -> None:
    assert next_quiet_hours_end(local(PARIS, 2026, 6, 1, 7, 59, 59), "Europe/Paris") == local(PARIS, 2026, 6, 1, 8, 0)
    assert next_quiet_hours_end(local(PARIS, 2026, 6, 1, 20, 0), "Europe/Paris") == local(PARIS, 2026, 6, 2, 8, 0)
    # 21:00 UTC on 1 June: 17:00 in New York (send now), 06:00 on 2 June in Tokyo (wait 2 h).
    assert next_quiet_hours_end(utc(2026, 6, 1, 21, 0), "America/New_York") == utc(2026, 6, 1, 21, 0)
    assert next_quiet_hours_end(utc(2026, 6, 1, 21, 0), "Asia/Tokyo") == utc(2026, 6, 1, 23, 0)
    at = datetime(2026, 6, 1, 12, 0, tzinfo=TOKYO)
    assert next_quiet_hours_end(at, "Asia/Tokyo").tzinfo is UTC


def test_quiet_hours_across_dst() -> None:
    # New York springs forward at 02:00 on 8 March: 08:00 that morning is EDT, 12:00 UTC.
    assert next_quiet_hours_end(utc(2026, 3, 8, 5, 0), "America/New_York") == utc(2026, 3, 8, 12, 0)
    # Paris falls back on 25 October: 08:00 that morning is CET, 07:00 UTC; the night
    # before lasts an hour longer.
    assert next_quiet_hours_end(utc(2026, 10, 24, 18, 0), "Europe/Paris") == utc(2026, 10, 25, 7, 0)
    assert in_quiet_hours(utc(2026, 10, 25, 1, 30), "Europe/Paris")


def test_a_custom_window_may_run_over_midnight() -> None:
    night_shift = {"start": time(22), "end": time(6)}
    assert not in_quiet_hours(utc(2026, 6, 1, 23, 0), "UTC", **night_shift)
    assert not in_quiet_hours(utc(2026, 6, 2, 5, 59), "UTC", **night_shift)
    assert in_quiet_hours(utc(2026, 6, 2, 6, 0), "UTC", **night_shift)
    assert next_quiet_hours_end(utc(2026, 6, 2, 6, 0), "UTC", **night_shift) == utc(2026, 6, 2, 22, 0)
    with pytest.raises(ValueError):
        in_quiet_hours(utc(2026, 6, 1), "UTC", start=time(8), end=time(8))
