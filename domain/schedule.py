"""Time in people's time zones: a channel's business hours, snooze presets and the quiet
hours in which we do not text contacts.

Business hours are a weekly schedule of local wall-clock intervals in one IANA time zone,
stored as plain JSON:

    >>> from datetime import UTC, datetime
    >>> hours = BusinessHours.parse({"timeZone": "Europe/Paris",
    ...                              "days": {"mon": [["09:00", "17:00"]], "tue": [["09:00", "12:00"]]}})
    >>> hours.is_open(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))  # a Monday, 14:00 in Paris
    True
    >>> hours.next_open(datetime(2026, 6, 1, 18, 0, tzinfo=UTC))  # 20:00: Tuesday 09:00 in Paris
    datetime.datetime(2026, 6, 2, 7, 0, tzinfo=datetime.timezone.utc)

Every function takes and returns timezone-aware datetimes; what it returns is in UTC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from domain.contact_fields import normalize_time_zone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS_PER_DAY = 12
_CLOCK = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")
_MIDNIGHT_END = 24 * 60


class ScheduleError(ValueError):
    """A schedule that cannot be used. `field` is the path of the offending value inside
    the dict given to `BusinessHours.parse`, e.g. "timeZone", "days.mon[0]"; "" means the
    value as a whole."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    @property
    def path(self) -> list[str]:
        """`field` as path segments, e.g. ["days", "mon", "0"] for "days.mon[0]"."""
        return [part for part in re.split(r"[.\[\]]+", self.field) if part]


def _known_zone(name: str) -> bool:
    # "localtime" is in the host's zone database but means the server's zone.
    try:
        return normalize_time_zone(name) == name and name != "localtime"
    except ValueError:
        return False


def _zone(name: str | None) -> tzinfo:
    """The IANA time zone called `name`; UTC when there is none or it is unknown."""
    return ZoneInfo(name) if name and _known_zone(name) else UTC


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("expected a timezone-aware datetime")


def _local(day: date, clock: time, zone: tzinfo, fold: int = 0) -> datetime:
    """The instant, in UTC, at which the wall clock in `zone` shows `clock` on `day`.

    A wall-clock time skipped by a DST change (02:30 on the night clocks go forward) is
    read on the old offset, which puts it after the change (03:30 on the new one)."""
    return datetime.combine(day, clock, tzinfo=zone).replace(fold=fold).astimezone(UTC)


# -- business hours -------------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessHours:
    """A weekly schedule: for each day (Monday first), sorted, non-overlapping intervals of
    local wall-clock time as minutes since midnight, end exclusive; an end of 1440 is
    "24:00". An interval cannot run past midnight: split it, e.g. mon 22:00-24:00 and
    tue 00:00-02:00.

    Across a DST change the schedule follows the wall clock: on the night clocks go
    forward, an interval starting in the skipped hour opens when the clocks jump; on the
    night they go back, the repeated hour is open (or closed) both times.
    """

    time_zone: str
    days: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def parse(cls, data: Any) -> BusinessHours:
        """Check a JSON-able schedule and build it; raises ScheduleError.

        `{"timeZone": "Europe/Paris", "days": {"mon": [["09:00", "17:00"]], ...}}`: an IANA
        time zone, and for any of the days mon, tue, wed, thu, fri, sat, sun (a day left
        out is closed) at most 12 intervals as ["HH:MM", "HH:MM"], from 00:00 to 24:00,
        each ending after it starts, none overlapping another of the same day (touching
        is fine: ["09:00", "12:00"] and ["12:00", "17:00"]).
        """
        if not isinstance(data, dict):
            raise ScheduleError("", 'Business hours must be an object: {"timeZone": ..., "days": {...}}.')
        for key in data:
            if key not in ("timeZone", "days"):
                raise ScheduleError(str(key), f'Unknown key {key!r}; business hours have "timeZone" and "days".')
        zone = data.get("timeZone")
        if not isinstance(zone, str):
            raise ScheduleError("timeZone", "Give the IANA time zone of the business hours, e.g. Europe/Paris.")
        if not _known_zone(zone):
            raise ScheduleError("timeZone", f"{zone!r} is not an IANA time zone, e.g. Europe/Paris.")
        days = data.get("days")
        if not isinstance(days, dict):
            raise ScheduleError("days", 'Give the days as an object, e.g. {"mon": [["09:00", "17:00"]]}.')
        for name in days:
            if name not in DAYS:
                raise ScheduleError(f"days.{name}", f"Unknown day {name!r}; use {', '.join(DAYS)}.")
        return cls(zone, tuple(_parse_day(day, days.get(day)) for day in DAYS))

    def to_dict(self) -> dict[str, Any]:
        """The normalised JSON form: every day, in order, intervals sorted, times as HH:MM.

        >>> hours = BusinessHours.parse({"timeZone": "UTC", "days": {"fri": [["13:00", "24:00"], ["8:30", "12:00"]]}})
        >>> hours.to_dict()["days"]["fri"], hours.to_dict()["days"]["sat"]
        ([['08:30', '12:00'], ['13:00', '24:00']], [])
        """
        return {
            "timeZone": self.time_zone,
            "days": {
                name: [[_clock_text(start), _clock_text(end)] for start, end in intervals]
                for name, intervals in zip(DAYS, self.days, strict=True)
            },
        }

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def is_open(self, at: datetime) -> bool:
        """Whether the local wall-clock time at the instant `at` falls in an interval."""
        _require_aware(at)
        local = at.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])

    def next_open(self, at: datetime) -> datetime | None:
        """The first instant at or after `at` at which the schedule is open: `at` itself
        when open, else the next opening. None when no day has an interval."""
        _require_aware(at)
        if not any(self.days):
            return None
        at = at.astimezone(UTC)
        if self.is_open(at):
            return at
        # An opening is either an instant at which the wall clock reads an interval's
        # start (either of the two, on the night clocks go back), or a DST change that
        # makes the clock jump into an interval. Two weeks and a day are enough: an
        # interval lost to a DST change on one date is there again a week later.
        zone, today = self.zone, at.astimezone(self.zone).date()
        horizon = at + timedelta(days=15)
        candidates = list(_offset_changes(zone, at, horizon))
        for offset in range(-1, 16):
            day = today + timedelta(days=offset)
            for start, _ in self.days[day.weekday()]:
                clock = time(start // 60, start % 60)
                candidates += [_local(day, clock, zone, fold=0), _local(day, clock, zone, fold=1)]
        return min((c for c in candidates if c >= at and self.is_open(c)), default=None)


def open_seconds(hours: BusinessHours | None, start: datetime, end: datetime) -> float:
    """How many seconds of [start, end) the schedule is open: the time a customer waited in
    business hours. Without a schedule, every second counts.

    >>> hours = BusinessHours.parse({"timeZone": "UTC", "days": {"mon": [["09:00", "17:00"]]}})
    >>> friday_evening, monday_ten = datetime(2026, 5, 29, 18, tzinfo=UTC), datetime(2026, 6, 1, 10, tzinfo=UTC)
    >>> open_seconds(hours, friday_evening, monday_ten) / 3600
    1.0
    >>> open_seconds(None, friday_evening, monday_ten) / 3600
    64.0
    """
    _require_aware(start)
    _require_aware(end)
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    zone, total = hours.zone, 0.0
    # A day before and after: an interval of the local day may begin on the UTC day before.
    day, last = start.astimezone(zone).date() - timedelta(days=1), end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        for first_minute, end_minute in hours.days[day.weekday()]:
            opens = _local(day, time(first_minute // 60, first_minute % 60), zone)
            if end_minute == _MIDNIGHT_END:
                closes = _local(day + timedelta(days=1), time(0), zone)
            else:
                closes = _local(day, time(end_minute // 60, end_minute % 60), zone)
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            total += max(overlap, 0.0)
        day += timedelta(days=1)
    return total


def _parse_day(name: str, value: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ScheduleError(f"days.{name}", 'Give a list of intervals, e.g. [["09:00", "17:00"]].')
    if len(value) > MAX_INTERVALS_PER_DAY:
        raise ScheduleError(f"days.{name}", f"A day may have at most {MAX_INTERVALS_PER_DAY} intervals.")
    intervals = []
    for index, interval in enumerate(value):
        field = f"days.{name}[{index}]"
        if not (isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, str) for v in interval)):
            raise ScheduleError(field, 'Give an interval as ["HH:MM", "HH:MM"], e.g. ["09:00", "17:00"].')
        start, end = (_parse_clock(field, text) for text in interval)
        if start == _MIDNIGHT_END:
            raise ScheduleError(field, "An interval cannot start at 24:00.")
        if end <= start:
            raise ScheduleError(
                field, f"The interval must end after it starts; {interval[1]} is not after {interval[0]}."
            )
        intervals.append((start, end, index))
    intervals.sort()
    for (_, end, _), (start, _, index) in pairwise(intervals):
        if start < end:
            raise ScheduleError(f"days.{name}[{index}]", "This interval overlaps another interval of the same day.")
    return tuple((start, end) for start, end, _ in intervals)


def _parse_clock(field: str, text: str) -> int:
    match = _CLOCK.fullmatch(text.strip())
    minutes = int(match[1]) * 60 + int(match[2]) if match else -1
    if not 0 <= minutes <= _MIDNIGHT_END:
        raise ScheduleError(field, f"{text!r} is not a time; use HH:MM from 00:00 to 24:00.")
    return minutes


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _offset_changes(zone: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in about [start, end] at which `zone` changes its UTC offset. Offsets
    change on whole seconds, and never twice within an hour."""

    def offset(timestamp: int) -> timedelta | None:
        return datetime.fromtimestamp(timestamp, zone).utcoffset()

    changes = []
    left, stop = math.floor(start.timestamp()), math.ceil(end.timestamp())
    while left < stop:
        right = min(left + 3600, stop)
        if offset(left) != offset(right):
            low, high = left, right  # low has the old offset, high the new one
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            changes.append(datetime.fromtimestamp(high, UTC))
        left = right
    return changes


# -- snooze presets -------------------------------------------------------------------------


class SnoozePreset(StrEnum):
    LATER_TODAY = "later_today"
    TOMORROW = "tomorrow"
    NEXT_WEEK = "next_week"


def snooze_until(preset: SnoozePreset, now: datetime, time_zone: str | None) -> datetime:
    """When a conversation snoozed with `preset` at `now` wakes up, for an agent in
    `time_zone` (unknown or None: UTC).

    * LATER_TODAY: four hours from now, rounded up to the next quarter hour (a time on a
      quarter hour stays). It may fall after midnight: "later" wins over "today".
    * TOMORROW: 09:00 local time on the next calendar day.
    * NEXT_WEEK: 09:00 local time on the next Monday; on a Monday, the Monday after.

        >>> from datetime import UTC, datetime
        >>> snooze_until(SnoozePreset.LATER_TODAY, datetime(2026, 6, 1, 10, 1, tzinfo=UTC), "UTC")
        datetime.datetime(2026, 6, 1, 14, 15, tzinfo=datetime.timezone.utc)
        >>> snooze_until(SnoozePreset.TOMORROW, datetime(2026, 6, 1, 23, 30, tzinfo=UTC), "Europe/Paris")
        datetime.datetime(2026, 6, 3, 7, 0, tzinfo=datetime.timezone.utc)
    """
    _require_aware(now)
    preset, now = SnoozePreset(preset), now.astimezone(UTC)
    if preset is SnoozePreset.LATER_TODAY:
        later = now + timedelta(hours=4)
        past_quarter = timedelta(minutes=later.minute % 15, seconds=later.second, microseconds=later.microsecond)
        return later if not past_quarter else later - past_quarter + timedelta(minutes=15)
    zone = _zone(time_zone)
    today = now.astimezone(zone).date()
    if preset is SnoozePreset.TOMORROW:
        return _local(today + timedelta(days=1), time(9), zone)
    return _local(today + timedelta(days=7 - today.weekday()), time(9), zone)


# -- quiet hours ----------------------------------------------------------------------------


def in_quiet_hours(at: datetime, time_zone: str | None, start: time = time(8), end: time = time(20)) -> bool:
    """Whether `at` is outside [start, end) on the wall clock in `time_zone` (unknown or
    None: UTC), i.e. too early or too late to text someone there. A window with end
    before start runs over midnight.

        >>> from datetime import UTC, datetime
        >>> in_quiet_hours(datetime(2026, 6, 1, 19, 0, tzinfo=UTC), "America/New_York")  # 15:00 there
        False
    """
    _require_aware(at)
    if start == end:
        raise ValueError("quiet hours need start != end")
    clock = at.astimezone(_zone(time_zone)).time()
    allowed = start <= clock < end if start < end else (clock >= start or clock < end)
    return not allowed


def next_quiet_hours_end(at: datetime, time_zone: str | None, start: time = time(8), end: time = time(20)) -> datetime:
    """The first instant at or after `at` outside quiet hours: `at` itself (in UTC) when
    the wall clock in `time_zone` is within [start, end), else the next `start` there.

        >>> from datetime import UTC, datetime
        >>> next_quiet_hours_end(datetime(2026, 6, 1, 21, 0, tzinfo=UTC), "Asia/Tokyo")  # 06:00 there
        datetime.datetime(2026, 6, 1, 23, 0, tzinfo=datetime.timezone.utc)
    """
    if not in_quiet_hours(at, time_zone, start, end):
        return at.astimezone(UTC)
    zone = _zone(time_zone)
    local = at.astimezone(zone)
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    return _local(day, start, zone)
