"""The booking system's wire format (snake_case, its own vocabulary), decoded strictly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Slot(msgspec.Struct, frozen=True):
    slot_id: str
    hall_id: str
    item_code: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    available: int


class DaySlots(msgspec.Struct, frozen=True):
    hall_id: str
    date: str
    open: bool
    slots: list[Slot]


class Hold(msgspec.Struct, frozen=True):
    hold_id: str
    expires_at: datetime


class Booking(msgspec.Struct, frozen=True):
    booking_no: str
    slot_id: str
    hall_id: str
    item_code: str
    starts_at: datetime
    ends_at: datetime
    status: str  # booked | cancelled | checked_in | no_show
    ticket_no: str | None = None
    warning: bool = False


class Standing(msgspec.Struct, frozen=True):
    person_ref: str
    no_shows_last_30_days: int
    blocked_until: datetime | None
    warning: bool


class Refusal(msgspec.Struct, frozen=True):
    error: str
    message: str = ""
    period: str | None = None
    blocked_until: str | None = None


class Voided(msgspec.Struct, frozen=True):
    """What the booking system did with one request id, made final (`voided`: it never arrived
    and now never will; otherwise `status` and `body` are the answer it gave)."""

    request_id: str
    voided: bool
    status: int
    body: dict[str, Any]

    @property
    def done(self) -> bool:
        return not self.voided and 200 <= self.status < 300
