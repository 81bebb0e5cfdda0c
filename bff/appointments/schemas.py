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


class CalendarDay(Camel):
    date: str
    open: bool  # the hall receives residents for this item that day
    bookable: bool  # open, inside the booking window, and a seat is free
    in_window: bool  # the booking system takes bookings for that day
    capacity: int
    available: int
    # How full the day is: booked and held seats over capacity, 0..1 (0 when closed).
    fullness: float


class CalendarOut(Camel):
    hall_id: str
    item_code: str
    first_bookable: str | None
    days: list[CalendarDay]


class HoldOut(Camel):
    hold_id: str
    slot_id: str
    expires_at: str


AppointmentStatus = Literal["pending", "booked", "checked_in", "cancelled", "no_show", "failed"]


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
    # What a phone shows without a second call (from the catalogue mirror; null until it is synced).
    hall_name: str | None = None
    hall_address: str | None = None
    item_name: str | None = None
    # A rescheduled appointment links forward to the one that replaced it.
    rescheduled_to: str | None = None


class AppointmentPage(Camel):
    items: list[AppointmentOut]
    next_cursor: str | None
