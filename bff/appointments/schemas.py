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


class AppointmentPage(Camel):
    items: list[AppointmentOut]
    next_cursor: str | None
