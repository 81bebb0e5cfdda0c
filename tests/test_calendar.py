"""Working-day countdowns (承诺时限) across weekends, holidays, 调休 working weekends and suspensions,
against the seeded holiday table."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from bff.platform.clock import Calendar, CalendarSource, Suspension, countdown


@pytest.fixture
async def calendar(services) -> Calendar:
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
    try:
        return await CalendarSource(pool).get()
    finally:
        await pool.close()


async def test_seeded_table_has_2026_notice_and_2027_statutory_days(db) -> None:
    rows = await db.fetch(
        "SELECT day, kind FROM bff.holiday_calendar WHERE day BETWEEN '2026-01-01' AND '2026-12-31'"
    )
    kinds = {row["day"]: row["kind"] for row in rows}
    # 2026: 元旦3 + 春节9 + 清明3 + 劳动节5 + 端午3 + 中秋3 + 国庆7 = 33 holiday days, 6 调休 working days.
    assert sum(1 for k in kinds.values() if k == "holiday") == 33
    assert sorted(d for d, k in kinds.items() if k == "workday") == [
        date(2026, 1, 4),
        date(2026, 2, 14),
        date(2026, 2, 28),
        date(2026, 5, 9),
        date(2026, 9, 20),
        date(2026, 10, 10),
    ]
    assert await db.fetchval("SELECT count(*) FROM bff.holiday_calendar WHERE day >= '2027-01-01'") == 13


def test_working_days_follow_weekends_holidays_and_adjusted_weekends(calendar: Calendar) -> None:
    assert calendar.is_working(date(2026, 11, 27))  # a Friday
    assert not calendar.is_working(date(2026, 11, 28))  # Saturday
    assert not calendar.is_working(date(2026, 10, 5))  # 国庆, a Monday
    assert calendar.is_working(date(2026, 10, 10))  # 调休: a Saturday worked
    assert calendar.is_working(date(2026, 9, 20))  # 调休: a Sunday worked
    assert not calendar.is_working(date(2026, 2, 23))  # 春节, a Monday


def test_countdown_across_a_weekend(calendar: Calendar) -> None:
    # Accepted Thu 2026-11-26; counting starts Fri 27: Fri, Mon 30, Tue 1 Dec -> 3 working days.
    result = countdown(calendar, date(2026, 11, 26), 3, [], today=date(2026, 11, 26))
    assert result.promise_date == date(2026, 12, 1)
    assert result.remaining_working_days == 3
    # On Monday: Friday and Monday are used.
    monday = countdown(calendar, date(2026, 11, 26), 3, [], today=date(2026, 11, 30))
    assert (monday.used_working_days, monday.remaining_working_days) == (2, 1)
    assert not monday.overdue


def test_countdown_across_national_day_and_adjusted_weekends(calendar: Calendar) -> None:
    # Accepted Fri 2026-09-18. Working days after it: Sun 9-20 (调休), Mon 21 .. Thu 24 (4),
    # then 25-27 中秋 and 10-01..07 国庆 are off, 28-30 Sep are working (3), Thu 10-08, Fri 10-09,
    # Sat 10-10 (调休).
    result = countdown(calendar, date(2026, 9, 18), 10, [], today=date(2026, 9, 18))
    assert result.promise_date == date(2026, 10, 9)
    assert countdown(calendar, date(2026, 9, 18), 11, [], today=date(2026, 9, 18)).promise_date == date(
        2026, 10, 10
    )
    during = countdown(calendar, date(2026, 9, 18), 10, [], today=date(2026, 10, 6))
    assert during.used_working_days == 8  # 9-20, 21, 22, 23, 24, 28, 29, 30
    assert during.remaining_working_days == 2


def test_spring_festival(calendar: Calendar) -> None:
    # Accepted Fri 2026-02-13; Sat 2-14 is a 调休 working day; 2-15..23 off; Tue 24 onwards.
    result = countdown(calendar, date(2026, 2, 13), 2, [], today=date(2026, 2, 13))
    assert result.promise_date == date(2026, 2, 24)


def test_supplement_suspension_stops_the_clock(calendar: Calendar) -> None:
    # Accepted Mon 2026-11-23 with 5 working days: normally due Mon 11-30.
    assert countdown(calendar, date(2026, 11, 23), 5, [], today=date(2026, 11, 23)).promise_date == date(
        2026, 11, 30
    )
    # 补正 issued Tue 11-24, answered Fri 11-27: Wed, Thu, Fri are suspended (3 working days).
    supplement = Suspension(kind="supplement", start=date(2026, 11, 24), end=date(2026, 11, 27))
    result = countdown(calendar, date(2026, 11, 23), 5, [supplement], today=date(2026, 11, 30))
    assert result.suspended_working_days == 3
    assert result.used_working_days == 2  # Tue 24 and Mon 30
    assert result.remaining_working_days == 3
    assert result.promise_date == date(2026, 12, 3)
    assert not result.paused


def test_open_suspension_pauses_the_countdown(calendar: Calendar) -> None:
    special = Suspension(kind="special_procedure", start=date(2026, 11, 24), end=None)
    paused = countdown(calendar, date(2026, 11, 23), 5, [special], today=date(2026, 12, 4))
    assert paused.paused
    # Issue 9 §5: the promised date stays visible while paused — the date if the clock resumed
    # today (Fri 4 Dec): the 4 days left are Mon 7 … Thu 10 — and the days left are frozen.
    assert paused.promise_date == date(2026, 12, 10)
    assert paused.used_working_days == 1  # only Tue 24 counted
    assert paused.remaining_working_days == 4
    later = countdown(calendar, date(2026, 11, 23), 5, [special], today=date(2026, 12, 9))
    assert later.remaining_working_days == 4 and later.promise_date == date(2026, 12, 15)


def test_overdue_and_zero_day_items(calendar: Calendar) -> None:
    late = countdown(calendar, date(2026, 11, 2), 3, [], today=date(2026, 11, 20))
    assert late.overdue and late.remaining_working_days == 0
    instant = countdown(calendar, date(2026, 11, 2), 0, [], today=date(2026, 11, 2))
    assert instant.promise_date == date(2026, 11, 2)
    assert instant.remaining_working_days == 0 and not instant.overdue
