"""The booking system's HTTP API (snake_case wire format, its own vocabulary).

Halls and which items they take come from the item library (an item is bookable in a hall when
its entry in the hall's region lists the hall and `is_schedule` is set). Plans: two sessions a working day,
30-minute slots, capacity = windows x people per window. Every mutating call carries the
caller's `request_id` and is de-duplicated by it: a retry gets the first answer.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Annotated, Any

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Response, Router, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


CHINA = timezone(timedelta(hours=8))
SESSIONS = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 0)))
SLOT_MINUTES = 30
WINDOWS = 4
PER_WINDOW = 1
MAX_WORKING_DAYS_AHEAD = 10
HOLD_TTL_S = 300
CAP_DAY, CAP_WEEK, CAP_MONTH = 1, 2, 6
NO_SHOW_LIMIT, NO_SHOW_WINDOW_D, BLOCK_D = 2, 30, 90


def problem(status: int, error: str, message: str) -> Response[Any]:
    return Response({"error": error, "message": message}, status_code=status)


async def settings(conn: Conn) -> dict[str, Any]:
    rows = await conn.fetch("SELECT name, value FROM sandbox.booking_settings")
    values: dict[str, Any] = {"enforce_capacity": True, "clock_offset_s": 0}
    values.update({row["name"]: row["value"] for row in rows})
    return values


async def now(conn: Conn) -> datetime:
    offset = (await settings(conn))["clock_offset_s"]
    return datetime.now(UTC) + timedelta(seconds=int(offset))


async def is_working(conn: Conn, day: date) -> bool:
    kind = await conn.fetchval("SELECT kind FROM sandbox.booking_holidays WHERE day = $1", day)
    if kind is not None:
        return bool(kind == "workday")
    return day.weekday() < 5


async def hall(conn: Conn, hall_id: str) -> dict[str, Any] | None:
    row = await conn.fetchval("SELECT body FROM sandbox.catalogue_halls WHERE id = $1", hall_id)
    return dict(row) if row is not None else None


async def bookable(conn: Conn, hall_id: str, item_code: str) -> bool:
    """The item's entry in the hall's region lists the hall and says it takes appointments."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM sandbox.catalogue_halls h
        JOIN sandbox.catalogue_entries e ON e.catalog_code = $2 AND e.region_code = h.region_code
        WHERE h.id = $1 AND e.status = 'active' AND (e.body ->> 'is_schedule')::boolean
          AND EXISTS (SELECT 1 FROM jsonb_array_elements(e.body -> 'halls') x WHERE x ->> 'id' = $1)
        """,
        hall_id,
        item_code,
    )
    return found is not None


def slot_id(hall_id: str, item_code: str, start: datetime) -> str:
    return f"{hall_id}.{item_code}.{start.astimezone(CHINA):%Y%m%d.%H%M}"


async def window(conn: Conn) -> tuple[date, date]:
    """First and last day that may be booked: the next working day to N working days ahead."""
    today = (await now(conn)).astimezone(CHINA).date()
    day, counted, first = today, 0, None
    while counted < MAX_WORKING_DAYS_AHEAD:
        day += timedelta(days=1)
        if await is_working(conn, day):
            counted += 1
            first = first or day
    assert first is not None
    return first, day


async def materialise(conn: Conn, hall_id: str, item_code: str, day: date) -> None:
    rows = []
    for start_t, end_t in SESSIONS:
        start = datetime.combine(day, start_t, CHINA)
        end = datetime.combine(day, end_t, CHINA)
        while start + timedelta(minutes=SLOT_MINUTES) <= end:
            stop = start + timedelta(minutes=SLOT_MINUTES)
            rows.append(
                (slot_id(hall_id, item_code, start), hall_id, item_code, start, stop, WINDOWS * PER_WINDOW)
            )
            start = stop
    await conn.executemany(
        """
        INSERT INTO sandbox.booking_slots (slot_id, hall_id, item_code, starts_at, ends_at, capacity)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slot_id) DO NOTHING
        """,
        rows,
    )


async def taken(conn: Conn, slot: str, *, except_hold: str | None = None) -> int:
    return int(
        await conn.fetchval(
            """
            SELECT (SELECT count(*) FROM sandbox.bookings
                     WHERE slot_id = $1 AND status IN ('booked', 'checked_in'))
                 + (SELECT count(*) FROM sandbox.booking_holds
                     WHERE slot_id = $1 AND NOT released AND expires_at > now()
                       AND hold_id IS DISTINCT FROM $2)
            """,
            slot,
            except_hold,
        )
    )


def slot_json(row: asyncpg.Record, used: int) -> dict[str, Any]:
    return {
        "slot_id": row["slot_id"],
        "hall_id": row["hall_id"],
        "item_code": row["item_code"],
        "starts_at": row["starts_at"].isoformat(),
        "ends_at": row["ends_at"].isoformat(),
        "capacity": row["capacity"],
        "available": max(0, row["capacity"] - used),
    }


@get("/halls/{hall_id:str}/slots")
async def list_slots(
    db: NamedDependency[asyncpg.Pool],
    hall_id: FromPath[str],
    item: Annotated[str, QueryParameter()],
    day: Annotated[date, QueryParameter(name="date")],
) -> Response[Any]:
    async with db.acquire() as conn:
        if await hall(conn, hall_id) is None:
            return problem(404, "hall_not_found", f"no hall {hall_id}")
        if not await bookable(conn, hall_id, item):
            return problem(422, "item_not_bookable", f"item {item} cannot be booked in hall {hall_id}")
        first, last = await window(conn)
        if not first <= day <= last:
            return problem(422, "date_out_of_window", f"bookable days are {first} to {last}")
        if not await is_working(conn, day):
            return Response({"hall_id": hall_id, "date": day.isoformat(), "open": False, "slots": []})
        await materialise(conn, hall_id, item, day)
        rows = await conn.fetch(
            """
            SELECT s.*, (SELECT count(*) FROM sandbox.bookings b
                          WHERE b.slot_id = s.slot_id AND b.status IN ('booked', 'checked_in'))
                      + (SELECT count(*) FROM sandbox.booking_holds h
                          WHERE h.slot_id = s.slot_id AND NOT h.released AND h.expires_at > now()) AS used
            FROM sandbox.booking_slots s
            WHERE s.hall_id = $1 AND s.item_code = $2 AND s.starts_at >= $3 AND s.starts_at < $4
            ORDER BY s.starts_at
            """,
            hall_id,
            item,
            datetime.combine(day, time(0), CHINA),
            datetime.combine(day + timedelta(days=1), time(0), CHINA),
        )
    return Response(
        {
            "hall_id": hall_id,
            "date": day.isoformat(),
            "open": True,
            "slots": [slot_json(r, r["used"]) for r in rows],
        }
    )


@get("/slots/{slot:str}")
async def get_slot(db: NamedDependency[asyncpg.Pool], slot: FromPath[str]) -> Response[Any]:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM sandbox.booking_slots WHERE slot_id = $1", slot)
        if row is None:
            return problem(404, "slot_not_found", f"no slot {slot}")
        return Response(slot_json(row, await taken(conn, slot)))


class HoldIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    slot_id: str
    person_ref: str
    ttl_seconds: int = HOLD_TTL_S


class BookIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    slot_id: str
    person_ref: str
    hold_id: str | None = None


class RequestIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str


class RescheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    slot_id: str


async def dedup(conn: Conn, request_id: str) -> Response[Any] | None:
    """Serialise work on one request id and return the answer already given to it, if any."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('booking:' || $1))", request_id)
    row = await conn.fetchrow(
        "SELECT status, body FROM sandbox.booking_requests WHERE request_id = $1", request_id
    )
    if row is None:
        return None
    return Response(row["body"], status_code=row["status"])


async def answer(conn: Conn, request_id: str, status: int, body: dict[str, Any]) -> Response[Any]:
    await conn.execute(
        "INSERT INTO sandbox.booking_requests (request_id, status, body) VALUES ($1, $2, $3)",
        request_id,
        status,
        body,
    )
    return Response(body, status_code=status)


async def lock_open_slot(conn: Conn, slot: str) -> asyncpg.Record | Response[Any]:
    row = await conn.fetchrow("SELECT * FROM sandbox.booking_slots WHERE slot_id = $1 FOR UPDATE", slot)
    if row is None:
        return problem(404, "slot_not_found", f"no slot {slot}")
    first, last = await window(conn)
    if not first <= row["starts_at"].astimezone(CHINA).date() <= last:
        return problem(422, "date_out_of_window", f"bookable days are {first} to {last}")
    return row


async def standing_of(conn: Conn, person_ref: str) -> dict[str, Any]:
    moment = await now(conn)
    rows = await conn.fetch(
        """
        SELECT b.updated_at FROM sandbox.bookings b
        WHERE b.person_ref = $1 AND b.status = 'no_show' ORDER BY b.updated_at
        """,
        person_ref,
    )
    marks = [r["updated_at"] for r in rows]
    blocked_until = None
    for i in range(len(marks) - NO_SHOW_LIMIT + 1):
        if marks[i + NO_SHOW_LIMIT - 1] - marks[i] <= timedelta(days=NO_SHOW_WINDOW_D):
            until = marks[i + NO_SHOW_LIMIT - 1] + timedelta(days=BLOCK_D)
            blocked_until = max(blocked_until or until, until)
    recent = sum(1 for m in marks if moment - m <= timedelta(days=NO_SHOW_WINDOW_D))
    blocked = blocked_until is not None and blocked_until > moment
    return {
        "person_ref": person_ref,
        "no_shows_last_30_days": recent,
        "blocked_until": blocked_until.isoformat() if blocked and blocked_until else None,
        "warning": not blocked and recent >= 1,
    }


async def caps_reached(conn: Conn, person_ref: str, start: datetime) -> str | None:
    day = start.astimezone(CHINA).date()
    monday = day - timedelta(days=day.weekday())
    first = day.replace(day=1)
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE (s.starts_at AT TIME ZONE 'Asia/Shanghai')::date = $2) AS d,
               count(*) FILTER (WHERE (s.starts_at AT TIME ZONE 'Asia/Shanghai')::date BETWEEN $3 AND $3 + 6) AS w,
               count(*) FILTER (WHERE date_trunc('month', s.starts_at AT TIME ZONE 'Asia/Shanghai')::date = $4) AS m
        FROM sandbox.bookings b JOIN sandbox.booking_slots s USING (slot_id)
        WHERE b.person_ref = $1 AND b.status IN ('booked', 'checked_in', 'no_show')
        """,
        person_ref,
        day,
        monday,
        first,
    )
    assert row is not None
    if row["d"] >= CAP_DAY:
        return "day"
    if row["w"] >= CAP_WEEK:
        return "week"
    if row["m"] >= CAP_MONTH:
        return "month"
    return None


@post("/holds")
async def create_hold(db: NamedDependency[asyncpg.Pool], data: Annotated[HoldIn, Body()]) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        if (seen := await dedup(conn, data.request_id)) is not None:
            return seen
        slot = await lock_open_slot(conn, data.slot_id)
        if isinstance(slot, Response):
            return slot
        if (await settings(conn))["enforce_capacity"] and await taken(conn, data.slot_id) >= slot["capacity"]:
            return await answer(conn, data.request_id, 409, {"error": "slot_full", "message": "no seat left"})
        hold_id = "HD" + hashlib.sha256(data.request_id.encode()).hexdigest()[:16].upper()
        expires = datetime.now(UTC) + timedelta(seconds=max(30, min(data.ttl_seconds, 900)))
        await conn.execute(
            """
            INSERT INTO sandbox.booking_holds (hold_id, request_id, slot_id, person_ref, expires_at)
            VALUES ($1, $2, $3, $4, $5)
            """,
            hold_id,
            data.request_id,
            data.slot_id,
            data.person_ref,
            expires,
        )
        return await answer(
            conn, data.request_id, 201, {"hold_id": hold_id, "expires_at": expires.isoformat()}
        )


@post("/requests/{request_id:str}/void")
async def void_request(db: NamedDependency[asyncpg.Pool], request_id: FromPath[str]) -> Response[Any]:
    """The truth about one request id, made final: the answer already given to it, or (if the
    request never arrived) a tombstone, so that it is refused if it arrives late."""
    async with db.acquire() as conn, conn.transaction():
        seen = await dedup(conn, request_id)
        if seen is not None:
            return Response(
                {"request_id": request_id, "voided": False, "status": seen.status_code, "body": seen.content}
            )
        body = {"error": "request_voided", "message": "this request was voided before it arrived"}
        await answer(conn, request_id, 409, body)
        return Response({"request_id": request_id, "voided": True, "status": 409, "body": body})


@post("/holds/{hold_id:str}/release")
async def release_hold(db: NamedDependency[asyncpg.Pool], hold_id: FromPath[str]) -> Response[Any]:
    await db.execute("UPDATE sandbox.booking_holds SET released = true WHERE hold_id = $1", hold_id)
    return Response({"hold_id": hold_id, "released": True})


def booking_json(row: Any, slot: Any) -> dict[str, Any]:
    return {
        "booking_no": row["booking_no"],
        "slot_id": slot["slot_id"],
        "hall_id": slot["hall_id"],
        "item_code": slot["item_code"],
        "starts_at": slot["starts_at"].isoformat(),
        "ends_at": slot["ends_at"].isoformat(),
        "status": row["status"],
        "ticket_no": row["ticket_no"],
    }


async def _book(conn: Conn, data: BookIn) -> tuple[int, dict[str, Any]]:
    slot = await lock_open_slot(conn, data.slot_id)
    if isinstance(slot, Response):
        return int(slot.status_code or 500), dict(slot.content)
    standing = await standing_of(conn, data.person_ref)
    if standing["blocked_until"]:
        return 403, {
            "error": "person_blocked",
            "message": "too many no-shows",
            "blocked_until": standing["blocked_until"],
        }
    cap = await caps_reached(conn, data.person_ref, slot["starts_at"])
    if cap is not None:
        return 409, {
            "error": "person_cap_reached",
            "message": f"booking cap per {cap} reached",
            "period": cap,
        }
    hold_ok = False
    if data.hold_id:
        hold_ok = bool(
            await conn.fetchval(
                """
                UPDATE sandbox.booking_holds SET released = true
                WHERE hold_id = $1 AND slot_id = $2 AND person_ref = $3 AND NOT released AND expires_at > now()
                RETURNING 1
                """,
                data.hold_id,
                data.slot_id,
                data.person_ref,
            )
        )
    enforce = (await settings(conn))["enforce_capacity"]
    if not hold_ok and enforce and await taken(conn, data.slot_id) >= slot["capacity"]:
        return 409, {"error": "slot_full", "message": "no seat left"}
    booking_no = "BK" + hashlib.sha256(data.request_id.encode()).hexdigest()[:12].upper()
    row = await conn.fetchrow(
        """
        INSERT INTO sandbox.bookings (booking_no, request_id, slot_id, person_ref, status)
        VALUES ($1, $2, $3, $4, 'booked') RETURNING *
        """,
        booking_no,
        data.request_id,
        data.slot_id,
        data.person_ref,
    )
    return 201, {**booking_json(row, slot), "warning": standing["warning"]}


@post("/bookings")
async def create_booking(db: NamedDependency[asyncpg.Pool], data: Annotated[BookIn, Body()]) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        if (seen := await dedup(conn, data.request_id)) is not None:
            return seen
        status, body = await _book(conn, data)
        if status == 404:
            return Response(body, status_code=404)
        return await answer(conn, data.request_id, status, body)


async def _load(conn: Conn, booking_no: str) -> tuple[Any, Any] | None:
    row = await conn.fetchrow("SELECT * FROM sandbox.bookings WHERE booking_no = $1 FOR UPDATE", booking_no)
    if row is None:
        return None
    slot = await conn.fetchrow("SELECT * FROM sandbox.booking_slots WHERE slot_id = $1", row["slot_id"])
    return row, slot


async def _booked(
    conn: Conn, booking_no: str, request_id: str, refusal: str
) -> Response[Any] | tuple[Any, Any]:
    """A change to a booking: the replayed answer, a refusal, or the (booked) row and its slot."""
    if (seen := await dedup(conn, request_id)) is not None:
        return seen
    found = await _load(conn, booking_no)
    if found is None:
        return problem(404, "booking_not_found", f"no booking {booking_no}")
    row, _ = found
    if row["status"] != "booked":
        return await answer(conn, request_id, 409, {"error": refusal, "message": row["status"]})
    return found


@get("/bookings/{booking_no:str}")
async def get_booking(db: NamedDependency[asyncpg.Pool], booking_no: FromPath[str]) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        found = await _load(conn, booking_no)
        if found is None:
            return problem(404, "booking_not_found", f"no booking {booking_no}")
        return Response(booking_json(*found))


@post("/bookings/{booking_no:str}/cancel")
async def cancel_booking(
    db: NamedDependency[asyncpg.Pool], booking_no: FromPath[str], data: Annotated[RequestIn, Body()]
) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        found = await _booked(conn, booking_no, data.request_id, "not_cancellable")
        if isinstance(found, Response):
            return found
        row, slot = found
        if slot["starts_at"] <= await now(conn):
            return await answer(
                conn, data.request_id, 409, {"error": "too_late", "message": "slot has begun"}
            )
        row = await conn.fetchrow(
            "UPDATE sandbox.bookings SET status = 'cancelled', updated_at = now() WHERE booking_no = $1 RETURNING *",
            booking_no,
        )
        return await answer(conn, data.request_id, 200, booking_json(row, slot))


@post("/bookings/{booking_no:str}/reschedule")
async def reschedule_booking(
    db: NamedDependency[asyncpg.Pool], booking_no: FromPath[str], data: Annotated[RescheduleIn, Body()]
) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        found = await _booked(conn, booking_no, data.request_id, "not_reschedulable")
        if isinstance(found, Response):
            return found
        row, old_slot = found
        new_slot = await conn.fetchrow("SELECT * FROM sandbox.booking_slots WHERE slot_id = $1", data.slot_id)
        if new_slot is None:
            return problem(404, "slot_not_found", f"no slot {data.slot_id}")
        if (new_slot["hall_id"], new_slot["item_code"]) != (old_slot["hall_id"], old_slot["item_code"]):
            return await answer(
                conn, data.request_id, 422, {"error": "other_service", "message": "same hall and item only"}
            )
        try:
            async with conn.transaction():  # a savepoint: a refused new slot keeps the old booking
                # The old booking stops counting before the caps and capacity of the new one are checked.
                await conn.execute(
                    "UPDATE sandbox.bookings SET status = 'cancelled', updated_at = now() WHERE booking_no = $1",
                    booking_no,
                )
                status, body = await _book(
                    conn,
                    BookIn(request_id=data.request_id, slot_id=data.slot_id, person_ref=row["person_ref"]),
                )
                if status != 201:
                    raise _Rollback(status, body)
                await conn.execute(
                    "UPDATE sandbox.bookings SET replaced_by = $2 WHERE booking_no = $1",
                    booking_no,
                    body["booking_no"],
                )
        except _Rollback as exc:
            return await answer(conn, data.request_id, exc.status, exc.body)
        return await answer(conn, data.request_id, 201, body)


class _Rollback(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@post("/bookings/{booking_no:str}/check-in")
async def check_in(
    db: NamedDependency[asyncpg.Pool], booking_no: FromPath[str], data: Annotated[RequestIn, Body()]
) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        found = await _booked(conn, booking_no, data.request_id, "not_checkable")
        if isinstance(found, Response):
            return found
        row, slot = found
        moment = await now(conn)
        if (
            moment.astimezone(CHINA).date() != slot["starts_at"].astimezone(CHINA).date()
            or moment > slot["ends_at"]
        ):
            return await answer(
                conn, data.request_id, 409, {"error": "not_today", "message": "check in on the day"}
            )
        number = await conn.fetchval(
            """
            SELECT count(*) + 1 FROM sandbox.bookings b JOIN sandbox.booking_slots s USING (slot_id)
            WHERE s.hall_id = $1 AND b.status = 'checked_in'
              AND (s.starts_at AT TIME ZONE 'Asia/Shanghai')::date = $2
            """,
            slot["hall_id"],
            slot["starts_at"].astimezone(CHINA).date(),
        )
        ticket = f"A{int(number):03d}"
        row = await conn.fetchrow(
            """
            UPDATE sandbox.bookings SET status = 'checked_in', ticket_no = $2, updated_at = now()
            WHERE booking_no = $1 RETURNING *
            """,
            booking_no,
            ticket,
        )
        return await answer(conn, data.request_id, 200, booking_json(row, slot))


@get("/people/{person_ref:str}/standing")
async def standing(db: NamedDependency[asyncpg.Pool], person_ref: FromPath[str]) -> dict[str, Any]:
    async with db.acquire() as conn:
        return await standing_of(conn, person_ref)


# --- control API (tests and demos) ---


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    enforce_capacity: bool | None = None
    clock_offset_s: int | None = None


class SlotIn(msgspec.Struct, forbid_unknown_fields=True):
    capacity: int


@put("/_control/settings")
async def put_settings(
    db: NamedDependency[asyncpg.Pool], data: Annotated[SettingsIn, Body()]
) -> dict[str, Any]:
    async with db.acquire() as conn:
        for name, value in (
            ("enforce_capacity", data.enforce_capacity),
            ("clock_offset_s", data.clock_offset_s),
        ):
            if value is not None:
                await conn.execute(
                    """
                    INSERT INTO sandbox.booking_settings (name, value) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
                    """,
                    name,
                    value,
                )
        return await settings(conn)


@put("/_control/slots/{slot:str}")
async def put_slot(
    db: NamedDependency[asyncpg.Pool], slot: FromPath[str], data: Annotated[SlotIn, Body()]
) -> Response[Any]:
    row = await db.fetchrow(
        "UPDATE sandbox.booking_slots SET capacity = $2 WHERE slot_id = $1 RETURNING *", slot, data.capacity
    )
    if row is None:
        return problem(404, "slot_not_found", slot)
    return Response(slot_json(row, 0))


@get("/_control/slots/{slot:str}/bookings")
async def slot_bookings(db: NamedDependency[asyncpg.Pool], slot: FromPath[str]) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT booking_no, status, person_ref FROM sandbox.bookings WHERE slot_id = $1", slot
    )
    return {"bookings": [dict(r) for r in rows]}


@post("/_control/bookings/{booking_no:str}/no-show")
async def mark_no_show(db: NamedDependency[asyncpg.Pool], booking_no: FromPath[str]) -> Response[Any]:
    row = await db.fetchrow(
        "UPDATE sandbox.bookings SET status = 'no_show', updated_at = now() WHERE booking_no = $1 RETURNING booking_no",
        booking_no,
    )
    if row is None:
        return problem(404, "booking_not_found", booking_no)
    return Response({"booking_no": booking_no, "status": "no_show"})


router = Router(
    path="/booking",
    route_handlers=[
        list_slots,
        get_slot,
        create_hold,
        release_hold,
        void_request,
        create_booking,
        get_booking,
        cancel_booking,
        reschedule_booking,
        check_in,
        standing,
        put_settings,
        put_slot,
        slot_bookings,
        mark_no_show,
    ],
)
