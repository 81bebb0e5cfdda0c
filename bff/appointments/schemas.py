"""Appointment requests and responses (camelCase; request bodies reject unknown fields)."""

from __future__ import annotations

from typing import Literal

import msgspec

from bff.platform.schema import Camel, CamelIn


class HoldIn(CamelIn):
    slot_id: str = msgspec.field()


class BookIn(CamelIn):
    slot_id: str | None = None
    hold_id: str | None = None


class RescheduleIn(CamelIn):
    slot_id: str


class EmptyIn(CamelIn):
    pass


class SlotOut(Camel):
    slot_id: str
    starts_at: str
    ends_at: str
    capacity: int
    available: int


class DaySlotsOut(Camel):
    hall_id: str
    item_code: str
    date: str
    open: bool
    slots: list[SlotOut]


class HoldOut(Camel):
    hold_id: str
    slot_id: str
    expires_at: str


AppointmentStatus = Literal["pending", "booked", "checked_in", "cancelling", "cancelled", "no_show", "failed"]


class AppointmentFreshness(Camel):
    """How current this view is: `ok` as confirmed by the booking system at `asOf`; `stale` when
    the booking system could not be asked (or the last change is still in doubt) and this is our
    copy as of `asOf` — it may be out of date (a check-in or no-show at the hall, say)."""

    status: Literal["ok", "stale"]
    as_of: str


class AppointmentOut(Camel):
    id: str
    status: AppointmentStatus
    slot_id: str
    hall_id: str
    item_code: str
    starts_at: str
    ends_at: str
    booking_no: str | None
    ticket_no: str | None
    rescheduled_from: str | None
    # After a first no-show: the resident is told before a second one blocks online booking.
    no_show_warning: bool = False
    # On the detail view only: whether the booking system confirmed this copy just now.
    freshness: AppointmentFreshness | None = None


class AppointmentPage(Camel):
    items: list[AppointmentOut]
    next_cursor: str | None
