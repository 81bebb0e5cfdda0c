"""Typed client for the booking system.

Every mutating call carries our stable request id; the booking system de-duplicates by it, so a
retry after a lost answer is safe and the calls are marked idempotent for the resilience layer.
A refusal (4xx with an error code) comes back as `BookingRefused`; the caller decides what it
means for the resident.
"""

from __future__ import annotations

from datetime import date
from typing import TypeVar
from urllib.parse import quote

from adapters.booking.schemas import Booking, DaySlots, Hold, Refusal, Slot, Standing, Voided
from adapters.http import Reply, Upstream
from adapters.refusal import Refused, result

T = TypeVar("T")


class BookingRefused(Refused[Refusal]):
    """The booking system said no (full, cap, blocked, wrong state); `reason` is its code."""


def _q(value: str) -> str:
    return quote(value, safe="")


class BookingClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _result(self, reply: Reply, type_: type[T]) -> T:
        return result(self.upstream, reply, type_, refusal=Refusal, refused=BookingRefused, label="booking")

    async def day_slots(self, hall_id: str, item_code: str, day: date) -> DaySlots:
        reply = await self.upstream.call(
            "GET", f"/halls/{_q(hall_id)}/slots", params={"item": item_code, "date": day.isoformat()}
        )
        return self._result(reply, DaySlots)

    async def slot(self, slot_id: str) -> Slot:
        return self._result(await self.upstream.call("GET", f"/slots/{_q(slot_id)}"), Slot)

    async def hold(self, request_id: str, slot_id: str, person_ref: str, ttl_seconds: int) -> Hold:
        reply = await self.upstream.call(
            "POST",
            "/holds",
            json={
                "request_id": request_id,
                "slot_id": slot_id,
                "person_ref": person_ref,
                "ttl_seconds": ttl_seconds,
            },
            idempotent=True,
        )
        return self._result(reply, Hold)

    async def release_hold(self, hold_id: str) -> None:
        reply = await self.upstream.call("POST", f"/holds/{_q(hold_id)}/release", json={}, idempotent=True)
        self._result(reply, dict)

    async def book(self, request_id: str, slot_id: str, person_ref: str, hold_id: str | None) -> Booking:
        reply = await self.upstream.call(
            "POST",
            "/bookings",
            json={"request_id": request_id, "slot_id": slot_id, "person_ref": person_ref, "hold_id": hold_id},
            idempotent=True,
        )
        return self._result(reply, Booking)

    async def void(self, request_id: str) -> Voided:
        """Settle an in-doubt request: its answer if it arrived, else refused for good if it comes."""
        reply = await self.upstream.call("POST", f"/requests/{_q(request_id)}/void", json={}, idempotent=True)
        return self._result(reply, Voided)

    async def get(self, booking_no: str) -> Booking:
        return self._result(await self.upstream.call("GET", f"/bookings/{_q(booking_no)}"), Booking)

    async def cancel(self, request_id: str, booking_no: str) -> Booking:
        reply = await self.upstream.call(
            "POST", f"/bookings/{_q(booking_no)}/cancel", json={"request_id": request_id}, idempotent=True
        )
        return self._result(reply, Booking)

    async def reschedule(self, request_id: str, booking_no: str, slot_id: str) -> Booking:
        reply = await self.upstream.call(
            "POST",
            f"/bookings/{_q(booking_no)}/reschedule",
            json={"request_id": request_id, "slot_id": slot_id},
            idempotent=True,
        )
        return self._result(reply, Booking)

    async def check_in(self, request_id: str, booking_no: str) -> Booking:
        reply = await self.upstream.call(
            "POST", f"/bookings/{_q(booking_no)}/check-in", json={"request_id": request_id}, idempotent=True
        )
        return self._result(reply, Booking)

    async def standing(self, person_ref: str) -> Standing:
        return self._result(await self.upstream.call("GET", f"/people/{_q(person_ref)}/standing"), Standing)
