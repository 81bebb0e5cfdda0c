"""Appointment requests and responses (camelCase; request bodies reject unknown fields)."""

from __future__ import annotations

from typing import Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "slot_full": (409, "该时段已约满", "This time slot is fully booked"),
        "slot_not_found": (404, "未找到该时段", "No such time slot"),
        "slot_in_past": (422, "该时段已过", "This time slot has passed"),
        "date_in_past": (422, "日期已过", "The date is in the past"),
        "date_out_of_window": (422, "该日期不在可预约范围内", "The date is outside the booking window"),
        "item_not_bookable_here": (422, "该事项不能在此大厅预约", "This item cannot be booked in this hall"),
        "hold_quota_exceeded": (409, "占号过多，请先完成或放弃已占的号", "Too many seats held at once"),
        "hold_not_found": (404, "未找到该占号", "No such hold"),
        "hold_duplicate": (409, "您已占用该时段的号", "You already hold a seat of this slot"),
        "attempt_voided": (
            409,
            "该次操作未完成，请重新提交",
            "That attempt did not go through; submit again",
        ),
        "hold_expired": (409, "占号已过期，请重新选择时段", "The hold has expired"),
        "booking_cap_reached": (409, "已达预约次数上限", "Booking limit reached"),
        "booking_blocked": (
            403,
            "因多次爽约，暂停网上预约",
            "Online booking is suspended after missed appointments",
        ),
        "appointment_not_cancellable": (409, "该预约不能取消", "This appointment cannot be cancelled"),
        "appointment_not_reschedulable": (409, "该预约不能改约", "This appointment cannot be rescheduled"),
        "check_in_not_possible": (409, "现在不能取号", "Check-in is not possible now"),
        "kiosk_only": (403, "请在大厅自助终端取号", "Check in at a kiosk in the hall"),
        "seats_available": (409, "仍有可预约的号源，请直接预约", "Seats are free: book one instead"),
        "waitlist_cap_reached": (409, "排队数量已达上限", "Too many waitlist entries"),
        "waitlist_duplicate": (409, "您已在该事项的排队中", "Already waiting for this item"),
        "waitlist_entry_not_found": (404, "未找到该排队", "No such waitlist entry"),
        "waitlist_not_active": (409, "该排队已结束", "This waitlist entry has ended"),
        "waitlist_range_invalid": (422, "日期范围无效", "Invalid date range"),
        "waitlist_nothing_open": (422, "该日期范围内大厅不办理此事项", "The hall is closed in that range"),
    },
)


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
    # What a phone shows without a second call (from the catalogue mirror; null until it is synced).
    hall_name: str | None = None
    hall_address: str | None = None
    item_name: str | None = None
    # A rescheduled appointment links forward to the one that replaced it.
    rescheduled_to: str | None = None


class AppointmentPage(Camel):
    items: list[AppointmentOut]
    next_cursor: str | None


class WaitlistIn(CamelIn):
    hall_id: str
    item_code: str
    date_from: str  # YYYY-MM-DD, China time
    date_to: str


WaitlistStatus = Literal["waiting", "offering", "offered", "booked", "missed", "left"]


class WaitlistOfferOut(Camel):
    """A seat held for the resident: book it with `POST /appointments {"holdId": …}` before
    `expiresAt`, or it passes to the next in line."""

    hold_id: str
    slot_id: str
    starts_at: str
    expires_at: str


class WaitlistEntryOut(Camel):
    id: str
    hall_id: str
    item_code: str
    date_from: str
    date_to: str
    status: WaitlistStatus
    joined_at: str
    # 1 = next to be offered a freed seat; null once the entry is not waiting.
    position: int | None
    offer: WaitlistOfferOut | None = None


class WaitlistPage(Camel):
    items: list[WaitlistEntryOut]
