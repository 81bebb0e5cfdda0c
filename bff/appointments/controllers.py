"""Routes of the appointment domain: slots, holds, bookings, cancel, reschedule, kiosk check-in."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.errors import ProblemError
from auth.acting import acts_as
from auth.guards import BOOKING_LEVEL, channels, residents_only
from auth.principal import Principal
from bff.appointments.schemas import (
    AppointmentOut,
    AppointmentPage,
    AppointmentStatus,
    BookIn,
    CalendarOut,
    DaySlotsOut,
    EmptyIn,
    HoldIn,
    HoldOut,
    RescheduleIn,
    WaitlistEntryOut,
    WaitlistIn,
    WaitlistPage,
)
from bff.appointments.service import AppointmentService
from bff.appointments.waitlist import WaitlistService
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.platform.openapi import linked

_CODE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_SLOT = re.compile(r"^[0-9A-Za-z_.:-]{1,128}$")


_APPOINTMENT = {"appointment_id": "$response.body#/id"}
_GET = ("ApiV1AppointmentsAppointmentIdGetAppointment", _APPOINTMENT)
# What a booking's answer leads to: reading it, cancelling it, moving it.
AN_APPOINTMENT = linked(
    {
        "GetAppointment": _GET,
        "CancelAppointment": ("ApiV1AppointmentsAppointmentIdCancelCancel", _APPOINTMENT),
        "RescheduleAppointment": ("ApiV1AppointmentsAppointmentIdRescheduleReschedule", _APPOINTMENT),
    }
)
A_HOLD = linked(
    {"ReleaseHold": ("ApiV1AppointmentsHoldsHoldIdReleaseHold", {"hold_id": "$response.body#/holdId"})}
)


def _check(pattern: re.Pattern[str], value: str, field: str) -> str:
    if not pattern.match(value):
        raise ProblemError(
            f"{field}: not a valid identifier",
            status=400,
            code="validation_failed",
            detail_zh=f"{field}：不是有效的标识",
        )
    return value


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
        return await appointments.slots(_check(_CODE, hall_id, "id"), _check(_CODE, item, "item"), day)

    @get("/{hall_id:str}/calendar", summary="Which days of one item in one hall are bookable, and how full")
    async def calendar(
        self,
        principal: NamedDependency[Principal],
        appointments: NamedDependency[AppointmentService],
        hall_id: FromPath[str],
        item: Annotated[str, QueryParameter(description="item code")],
    ) -> CalendarOut:
        return await appointments.calendar(_check(_CODE, hall_id, "id"), _check(_CODE, item, "item"))


class AppointmentController(Controller):
    path = "/appointments"
    tags = ["appointments"]
    guards = [residents_only, BOOKING_LEVEL]

    @post(
        "/holds",
        summary="Hold a seat for a few minutes while the form is filled",
        status_code=201,
        opt=acts_as("book"),
        operation_class=A_HOLD,
    )
    async def hold(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        data: Annotated[HoldIn, Body()],
    ) -> Response[HoldOut]:
        slot_id = _check(_SLOT, data.slot_id, "slotId")
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.hold(ctx, principal, slot_id)
        )

    @delete(
        "/holds/{hold_id:str}",
        summary="Let a held seat go (free at once; the booking system is told)",
        status_code=200,
    )
    async def release_hold(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        hold_id: FromPath[str],
    ) -> Response[HoldOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.release(ctx, principal.person_id, hold_id)
        )

    @post(
        "/waitlist",
        summary="Wait in line for a full hall: a freed seat is held for the first in line",
        status_code=201,
    )
    async def join_waitlist(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        waitlist: NamedDependency[WaitlistService],
        idempotency_key: IdempotencyKey,
        data: Annotated[WaitlistIn, Body()],
    ) -> Response[WaitlistEntryOut]:
        hall_id = _check(_CODE, data.hall_id, "hallId")
        item_code = _check(_CODE, data.item_code, "itemCode")
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: waitlist.join(
                ctx, principal.person_id, hall_id, item_code, data.date_from, data.date_to
            ),
        )

    @get("/waitlist", summary="My places in line, with any seat offered to me")
    async def list_waitlist(
        self, principal: NamedDependency[Principal], waitlist: NamedDependency[WaitlistService]
    ) -> WaitlistPage:
        return await waitlist.mine(principal.person_id)

    @delete("/waitlist/{entry_id:str}", summary="Leave the line (a seat offered passes on)", status_code=200)
    async def leave_waitlist(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        waitlist: NamedDependency[WaitlistService],
        idempotency_key: IdempotencyKey,
        entry_id: FromPath[str],
    ) -> Response[WaitlistEntryOut]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: waitlist.leave(ctx, principal.person_id, entry_id)
        )

    @post(
        "",
        summary="Book a slot (from a hold or directly)",
        status_code=201,
        operation_class=AN_APPOINTMENT,
        opt=acts_as("book"),
    )
    async def book(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        data: Annotated[BookIn, Body()],
    ) -> Response[AppointmentOut]:
        if (data.slot_id is None) == (data.hold_id is None):
            raise ProblemError(
                "give exactly one of slotId and holdId",
                status=400,
                code="validation_failed",
                detail_zh="slotId 与 holdId 须且只须给出一个",
            )
        if data.slot_id is not None:
            _check(_SLOT, data.slot_id, "slotId")
        return await idempotency.run(
            request,
            principal.person_id,
            lambda ctx: appointments.book(ctx, principal, data.slot_id, data.hold_id),
        )

    @get("", summary="My appointments, soonest first", opt=acts_as("book"))
    async def list_appointments(
        self,
        principal: NamedDependency[Principal],
        appointments: NamedDependency[AppointmentService],
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        status: Annotated[
            AppointmentStatus | None, QueryParameter(description="only appointments in this status")
        ] = None,
    ) -> AppointmentPage:
        return await appointments.mine(principal, limit, cursor, status)

    @get("/{appointment_id:str}", summary="One appointment", opt=acts_as("book"))
    async def get_appointment(
        self,
        principal: NamedDependency[Principal],
        appointments: NamedDependency[AppointmentService],
        appointment_id: FromPath[str],
    ) -> AppointmentOut:
        return await appointments.view(principal, appointment_id)

    @post(
        "/{appointment_id:str}/cancel",
        summary="Cancel",
        status_code=200,
        operation_class=linked({"GetAppointment": _GET}),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        appointment_id: FromPath[str],
        data: Annotated[EmptyIn | None, Body()] = None,
    ) -> Response[AppointmentOut]:
        row = await appointments.own(principal, appointment_id)
        return await idempotency.run(request, principal.person_id, lambda ctx: appointments.cancel(ctx, row))

    @post(
        "/{appointment_id:str}/reschedule",
        summary="Move to another slot",
        status_code=201,
        operation_class=AN_APPOINTMENT,
    )
    async def reschedule(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        appointment_id: FromPath[str],
        data: Annotated[RescheduleIn, Body()],
    ) -> Response[AppointmentOut]:
        slot_id = _check(_SLOT, data.slot_id, "slotId")
        row = await appointments.own(principal, appointment_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.reschedule(ctx, row, slot_id)
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
        idempotency: NamedDependency[IdempotencyStore],
        appointments: NamedDependency[AppointmentService],
        idempotency_key: IdempotencyKey,
        appointment_id: FromPath[str],
        data: Annotated[EmptyIn | None, Body()] = None,
    ) -> Response[AppointmentOut]:
        row = await appointments.own(principal, appointment_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: appointments.check_in(ctx, row)
        )
