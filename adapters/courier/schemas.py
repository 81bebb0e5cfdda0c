"""The courier's wire format (EMS-like): shipments, tracking events, the changes feed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

CourierStatus = Literal[
    "created", "picked_up", "in_transit", "out_for_delivery", "delivered", "failed", "returned"
]


class Sender(msgspec.Struct, frozen=True):
    hall_id: str
    hall_name: str = ""
    phone: str | None = None


class Recipient(msgspec.Struct, frozen=True):
    name: str
    phone: str
    address: str
    region_code: str

    def __repr__(self) -> str:  # never in a log line
        return f"Recipient(region_code={self.region_code!r})"


class ShipmentCreated(msgspec.Struct, frozen=True):
    waybill_no: str
    status: CourierStatus


class CourierEvent(msgspec.Struct, frozen=True):
    """One status change of a shipment, as the callback, the feed and tracking carry it."""

    event_id: str
    seq: int
    waybill_no: str
    status: CourierStatus
    at: datetime
    place: str
    description: str
    # The callback and the feed name the case; tracking (one shipment's events) does not.
    project_no: str | None = None


class Tracking(msgspec.Struct, frozen=True):
    waybill_no: str
    carrier: str
    status: CourierStatus
    events: list[CourierEvent]
    project_no: str | None = None


class Changes(msgspec.Struct, frozen=True):
    events: list[CourierEvent]
    next_since: int


class Refusal(msgspec.Struct, frozen=True):
    error: str
    message: str = ""
