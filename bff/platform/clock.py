"""Working-day arithmetic for 承诺时限, from the holiday calendar table.

Rules (DOMAIN.md): time limits are in working days; 补正 and special procedures stop the clock.
Counting starts the working day after acceptance (受理次日起算). A suspension that starts on day S
and ends on day E removes the days S < d <= E from the count: the day a 补正 notice is issued
still counts, the day it is answered does not; the clock runs again the next working day.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import asyncpg
import msgspec

CHINA = timezone(timedelta(hours=8))  # no DST in China: a fixed offset is exact
_CACHE_SECONDS = 300.0
# How far the walk for a promise date may go; a limit beyond this is a data error, not a date.
_MAX_WALK_DAYS = 3 * 366


def china_date(moment: datetime) -> date:
    return moment.astimezone(CHINA).date()


class Calendar:
    """Mon-Fri are working days unless listed as holidays; listed 'workday' weekends are too."""

    def __init__(self, overrides: dict[date, bool]) -> None:
        self.overrides = overrides

    def is_working(self, day: date) -> bool:
        listed = self.overrides.get(day)
        if listed is not None:
            return listed
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The `days`-th working day after `start` (`start` itself when days == 0)."""
        day, counted = start, 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working(day):
                counted += 1
        return day

    def working_days_between(self, after: date, until: date) -> int:
        """Working days d with after < d <= until."""
        count, day = 0, after
        while day < until:
            day += timedelta(days=1)
            if self.is_working(day):
                count += 1
        return count


class Suspension(msgspec.Struct, frozen=True):
    kind: str  # supplement | special_procedure
    start: date
    end: date | None  # None: still open


class Countdown(msgspec.Struct, frozen=True):
    promised_working_days: int
    used_working_days: int
    remaining_working_days: int
    suspended_working_days: int
    paused: bool
    overdue: bool
    # While the clock is paused (补正, special procedures): the date if it resumed today, so the
    # resident still sees it; the working days left stay frozen and the date moves with the pause.
    promise_date: date | None


def _suspended(day: date, suspensions: list[Suspension]) -> bool:
    return any(s.start < day and (s.end is None or day <= s.end) for s in suspensions)


def countdown(
    calendar: Calendar,
    accepted_on: date,
    promise_days: int,
    suspensions: list[Suspension],
    today: date,
) -> Countdown:
    used = suspended = 0
    day = accepted_on
    while day < today:
        day += timedelta(days=1)
        if not calendar.is_working(day):
            continue
        if _suspended(day, suspensions):
            suspended += 1
        else:
            used += 1
    paused = any(s.end is None and s.start <= today for s in suspensions)
    walked = [Suspension(s.kind, s.start, s.end if s.end is not None else today) for s in suspensions]
    promise_date, counted, day = accepted_on, 0, accepted_on
    for _ in range(_MAX_WALK_DAYS):
        if counted >= promise_days:
            break
        day += timedelta(days=1)
        if calendar.is_working(day) and not _suspended(day, walked):
            counted += 1
            promise_date = day
    return Countdown(
        promised_working_days=promise_days,
        used_working_days=used,
        remaining_working_days=max(0, promise_days - used),
        suspended_working_days=suspended,
        paused=paused,
        overdue=used > promise_days,
        promise_date=promise_date,
    )


class CalendarSource:
    """Reads the table once per few minutes: it changes a few times a year."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._calendar: Calendar | None = None
        self._loaded = 0.0

    async def get(self) -> Calendar:
        if self._calendar is None or time.monotonic() - self._loaded > _CACHE_SECONDS:
            rows = await self.pool.fetch("SELECT day, kind FROM bff.holiday_calendar")
            self._calendar = Calendar({row["day"]: row["kind"] == "workday" for row in rows})
            self._loaded = time.monotonic()
        return self._calendar
