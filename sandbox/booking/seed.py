"""The booking system's own holiday list (the same public notice the BFF's calendar follows)."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg

_HOLIDAYS_2026 = [
    ("2026-01-01", "2026-01-03"),
    ("2026-02-15", "2026-02-23"),
    ("2026-04-04", "2026-04-06"),
    ("2026-05-01", "2026-05-05"),
    ("2026-06-19", "2026-06-21"),
    ("2026-09-25", "2026-09-27"),
    ("2026-10-01", "2026-10-07"),
]
_WORKDAYS_2026 = ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]
_HOLIDAYS_2027 = [
    "2027-01-01",
    "2027-02-05",
    "2027-02-06",
    "2027-02-07",
    "2027-02-08",
    "2027-04-05",
    "2027-05-01",
    "2027-05-02",
    "2027-06-09",
    "2027-09-15",
    "2027-10-01",
    "2027-10-02",
    "2027-10-03",
]


def holiday_rows() -> list[tuple[date, str]]:
    rows: list[tuple[date, str]] = []
    for first, last in _HOLIDAYS_2026:
        day = date.fromisoformat(first)
        while day <= date.fromisoformat(last):
            rows.append((day, "holiday"))
            day += timedelta(days=1)
    rows += [(date.fromisoformat(d), "workday") for d in _WORKDAYS_2026]
    rows += [(date.fromisoformat(d), "holiday") for d in _HOLIDAYS_2027]
    return rows


async def seed_booking(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO sandbox.booking_holidays (day, kind) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
            holiday_rows(),
        )
