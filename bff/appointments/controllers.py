"""Routes of the appointment domain: slots, holds, bookings, cancel, reschedule, kiosk check-in."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.errors import ProblemError
from auth.guards import channels, residents_only
from auth.principal import Principal
from bff.appointments.schemas import (
    AppointmentOut,
    AppointmentPage,
    BookIn,
    DaySlotsOut,
    EmptyIn,
    HoldIn,
    RescheduleIn,
    SlotOut,
)
from bff.appointments.service import AppointmentService, appointment_out, iso
from bff.cases.access import owned, parse_uuid
from bff.cases.calendar import CHINA
from bff.idempotency import IdempotencyStore
from bff.platform.paging import keyset_after, keyset_page

_CODE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_SLOT = re.compile(r"^[0-9A-Za-z_.:-]{1,128}$")


def _check(pattern: re.Pattern[str], value: str, field: str) -> None:
    if not pattern.match(value):
        raise ProblemError(f"{field}: not a valid identifier", status=400, code="validation_failed")


class SlotController(Controller):
    path = "/halls"
    tags = ["appointments"]
    guards = [residents_only]

    @get("/{hall_id:str}/slots", summary="Bookable slots of one item in one hall on one day")
    async def slots(
        self,
        principal: NamedDependency[Principal],
        appointments: NamedDependency[AppointmentService],
        hall_id: FromPath[str],
        item: Annotated[str, QueryParameter(description="item code")],
        day: Annotated[date, QueryParameter(name="date", description="YYYY-MM-DD (China time)")],
    ) -> DaySlotsOut:
        _check(_CODE, hall_id, "id")
        _check(_CODE, item, "item")
        if day < datetime.now(CHINA).date():
            raise ProblemError("date: must not be in the past", status=422, code="date_in_past")
        slots = await appointments.day_slots(hall_id, item, day)
        return DaySlotsOut(
            hall_id=hall_id,
            item_code=item,
            date=day.isoformat(),
            open=bool(slots),
            slots=[
                SlotOut(
                    slot_id=s.slot_id,
                    starts_at=iso(s.starts_at),
                    ends_at=iso(s.ends_at),
                    capacity=s.capacity,
                    available=s.available,
                )
                for s in slots
            ],
        )


class AppointmentController(Controller):
    path = "/appointments"
    tags = ["appointments"]
    guards = [residents_only]

    @post("/holds", summary="Hold a seat for a few minutes while the form is filled", status_code=201)
    async def hold(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        data: Annotated[HoldIn, Body()],
    ) -> Response[bytes]:
        _check(_SLOT, data.slot_id, "slotId")
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: appointments.hold(ctx, principal.person_id, data.slot_id),
        )

    @post("", summary="Book a slot (from a hold or directly)", status_code=201)
    async def book(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        data: Annotated[BookIn, Body()],
    ) -> Response[bytes]:
        if (data.slot_id is None) == (data.hold_id is None):
            raise ProblemError("give exactly one of slotId and holdId", status=400, code="validation_failed")
        if data.slot_id is not None:
            _check(_SLOT, data.slot_id, "slotId")
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: appointments.book(ctx, principal.person_id, data.slot_id, data.hold_id),
        )

    @get("", summary="My appointments, soonest first")
    async def list_appointments(
        self,
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> AppointmentPage:
        moment, ident = keyset_after(cursor)
        rows = await db_pool.fetch(
            """
            SELECT * FROM bff.appointments
            WHERE person_id = $1 AND status <> 'failed'
              AND ($2::timestamptz IS NULL OR (starts_at, id) > ($2, $3))
            ORDER BY starts_at, id LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
        )
        page, following = keyset_page(rows, limit, "starts_at")
        return AppointmentPage(items=[appointment_out(r) for r in page], next_cursor=following)

    async def _own(self, pool: asyncpg.Pool, principal: Principal, appointment_id: str) -> asyncpg.Record:
        ident = parse_uuid(appointment_id, "appointment")
        row = await pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", ident)
        return await owned(pool, principal, "appointment", appointment_id, row)

    @get("/{appointment_id:str}", summary="One appointment")
    async def get_appointment(
        self,
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        appointments: NamedDependency[AppointmentService],
        appointment_id: FromPath[str],
    ) -> AppointmentOut:
        row = await self._own(db_pool, principal, appointment_id)
        return appointment_out(await appointments.refresh(row))

    @post("/{appointment_id:str}/cancel", summary="Cancel", status_code=200)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        appointment_id: FromPath[str],
        data: Annotated[EmptyIn | None, Body()] = None,
    ) -> Response[bytes]:
        row = await self._own(db_pool, principal, appointment_id)
        return await idempotency.run(request, principal.person_id, lambda ctx: appointments.cancel(ctx, row))

    @post("/{appointment_id:str}/reschedule", summary="Move to another slot", status_code=201)
    async def reschedule(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        appointment_id: FromPath[str],
        data: Annotated[RescheduleIn, Body()],
    ) -> Response[bytes]:
        _check(_SLOT, data.slot_id, "slotId")
        row = await self._own(db_pool, principal, appointment_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.reschedule(ctx, row, data.slot_id)
        )

    @post(
        "/{appointment_id:str}/check-in",
        summary="Kiosk 取号: a queue ticket",
        status_code=200,
        guards=[channels("kiosk")],
    )
    async def check_in(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        appointment_id: FromPath[str],
        data: Annotated[EmptyIn | None, Body()] = None,
    ) -> Response[bytes]:
        row = await self._own(db_pool, principal, appointment_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.check_in(ctx, row)
        )


__all__ = ["AppointmentController", "SlotController", "msgspec"]
