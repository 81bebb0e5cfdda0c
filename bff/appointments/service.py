"""Holds and bookings: the capacity guarantee lives in this database's transactions.

Every hold or booking locks its slot's row (`SELECT … FOR UPDATE`), counts the seats taken
(live bookings + unexpired holds) and inserts only under the slot's capacity, in one transaction,
so concurrent bookers on any number of BFF replicas serialise on that row and the slot can never
be overbooked, whatever the cache or the upstream says. Per-person rules (hold quota, booking
caps) serialise on a per-person advisory lock in the same way.

Each mutation is re-entrant under its idempotency key: its ids come from `IdemContext`, the
local row is inserted once (ON CONFLICT DO NOTHING), and the upstream call carries the same
request id, which the booking system de-duplicates.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import asyncpg.pool

from adapters.booking.client import BookingClient, BookingRefused
from adapters.booking.schemas import Booking, Slot
from adapters.errors import ProblemError, UpstreamUnavailable
from auth.principal import Principal
from bff.appointments.schemas import AppointmentOut, AppointmentPage, DaySlotsOut, HoldOut, SlotOut
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.clock import CHINA
from bff.platform.paging import keyset_after, keyset_page
from bff.platform.problems import define
from push import outbox
from push.topics import AppointmentChanged, AppointmentReminder

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


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

LIVE = ("pending", "booked", "checked_in")
# DOMAIN.md, rules seen in real halls: 1 a day, 2 a week, 6 a month.
CAPS = (("day", 1, "每天最多预约1次"), ("week", 2, "每周最多预约2次"), ("month", 6, "每月最多预约6次"))
_CAP_EN = {"day": "one booking a day", "week": "two bookings a week", "month": "six bookings a month"}


def iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat()


def appointment_out(row: asyncpg.Record | None, *, warning: bool = False) -> AppointmentOut:
    assert row is not None
    return AppointmentOut(
        id=str(row["id"]),
        status=row["status"],
        slot_id=row["slot_id"],
        hall_id=row["hall_id"],
        item_code=row["item_code"],
        starts_at=iso(row["starts_at"]),
        ends_at=iso(row["ends_at"]),
        booking_no=row["booking_no"],
        ticket_no=row["ticket_no"],
        rescheduled_from=str(row["rescheduled_from"]) if row["rescheduled_from"] else None,
        no_show_warning=warning,
    )


def _refusal(exc: BookingRefused) -> ProblemError:
    """The booking system's refusal, told in our own codes."""
    reason = exc.reason
    if reason == "slot_full":
        return ProblemError("every seat of this slot is taken", status=409, code="slot_full")
    if reason == "person_cap_reached":
        period = exc.refusal.period or "day"
        return ProblemError(
            f"booking limit reached: {_CAP_EN.get(period, period)}",
            status=409,
            code="booking_cap_reached",
            extra={"period": period},
        )
    if reason == "person_blocked":
        return ProblemError(
            "online booking is suspended after two missed appointments in a month",
            status=403,
            code="booking_blocked",
            extra={"blockedUntil": exc.refusal.blocked_until},
        )
    if reason in {"date_out_of_window"}:
        return ProblemError(exc.refusal.message, status=422, code="date_out_of_window")
    if reason in {"item_not_bookable"}:
        return ProblemError(exc.refusal.message, status=422, code="item_not_bookable_here")
    if reason in {"hall_not_found"}:
        return ProblemError(exc.refusal.message, status=404, code="hall_not_found")
    if reason in {"slot_not_found"}:
        return ProblemError(exc.refusal.message, status=404, code="slot_not_found")
    if reason in {"not_today", "not_checkable"}:
        return ProblemError(
            "check-in is possible on the day of the appointment only",
            status=409,
            code="check_in_not_possible",
        )
    if reason in {"not_cancellable", "too_late"}:
        return ProblemError(exc.refusal.message, status=409, code="appointment_not_cancellable")
    if reason in {"not_reschedulable", "other_service"}:
        return ProblemError(exc.refusal.message, status=409, code="appointment_not_reschedulable")
    return ProblemError(exc.refusal.message or reason, status=409, code="conflict")


class AppointmentService:
    def __init__(
        self, pool: asyncpg.Pool, client: BookingClient, *, hold_ttl_s: int, hold_quota: int
    ) -> None:
        self.pool = pool
        self.client = client
        self.hold_ttl_s = hold_ttl_s
        self.hold_quota = hold_quota

    # --- reading ---

    async def slots(self, hall_id: str, item_code: str, day: date) -> DaySlotsOut:
        if day < datetime.now(CHINA).date():
            raise ProblemError("date: must not be in the past", status=422, code="date_in_past")
        slots = await self.day_slots(hall_id, item_code, day)
        return DaySlotsOut(
            hall_id=hall_id,
            item_code=item_code,
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

    async def mine(self, principal: Principal, limit: int, cursor: str | None) -> AppointmentPage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
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

    async def own(self, principal: Principal, appointment_id: str) -> asyncpg.Record:
        """The caller's appointment, else a 404 (another resident's is audited)."""
        ident = parse_uuid(appointment_id, "appointment")
        row = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", ident)
        return await owned(self.pool, principal, "appointment", appointment_id, row)

    async def view(self, principal: Principal, appointment_id: str) -> AppointmentOut:
        return appointment_out(await self.refresh(await self.own(principal, appointment_id)))

    # --- slots ---

    async def day_slots(self, hall_id: str, item_code: str, day: date) -> list[Slot]:
        try:
            found = await self.client.day_slots(hall_id, item_code, day)
        except BookingRefused as exc:
            raise _refusal(exc) from None
        await self._mirror(found.slots)
        return found.slots

    async def _mirror(self, slots: list[Slot]) -> None:
        if not slots:
            return
        await self.pool.executemany(
            """
            INSERT INTO bff.slots (slot_id, hall_id, item_code, starts_at, ends_at, capacity)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (slot_id) DO UPDATE SET capacity = EXCLUDED.capacity, refreshed_at = now()
              WHERE bff.slots.capacity IS DISTINCT FROM EXCLUDED.capacity
            """,
            [(s.slot_id, s.hall_id, s.item_code, s.starts_at, s.ends_at, s.capacity) for s in slots],
        )

    async def _slot(self, slot_id: str) -> asyncpg.Record:
        """Our copy of the slot (from the last slots view, else asked of the booking system)."""
        row = await self.pool.fetchrow("SELECT * FROM bff.slots WHERE slot_id = $1", slot_id)
        if row is None:
            try:
                slot = await self.client.slot(slot_id)
            except BookingRefused as exc:
                raise _refusal(exc) from None
            await self._mirror([slot])
            row = await self.pool.fetchrow("SELECT * FROM bff.slots WHERE slot_id = $1", slot_id)
            assert row is not None
        if row["starts_at"] <= datetime.now(UTC):
            raise ProblemError("this slot has already begun", status=422, code="slot_in_past")
        return row

    @staticmethod
    async def _lock_and_count(
        conn: Conn, slot_id: str, *, except_hold: uuid.UUID | None = None
    ) -> tuple[int, int]:
        """(capacity, seats taken) with the slot row locked until the transaction ends."""
        capacity = await conn.fetchval(
            "SELECT capacity FROM bff.slots WHERE slot_id = $1 FOR UPDATE", slot_id
        )
        taken = await conn.fetchval(
            """
            SELECT (SELECT count(*) FROM bff.appointments
                     WHERE slot_id = $1 AND status IN ('pending', 'booked', 'checked_in'))
                 + (SELECT count(*) FROM bff.appointment_holds
                     WHERE slot_id = $1 AND consumed_at IS NULL AND released_at IS NULL
                       AND expires_at > now() AND id IS DISTINCT FROM $2)
            """,
            slot_id,
            except_hold,
        )
        return int(capacity), int(taken)

    @staticmethod
    async def _lock_person(conn: Conn, person_id: str) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sx:appt:' || $1))", person_id)

    # --- holds ---

    async def hold(self, ctx: IdemContext, person_id: str, slot_id: str) -> Recorded[HoldOut]:
        hold_id = ctx.request_id
        existing = await self.pool.fetchrow("SELECT * FROM bff.appointment_holds WHERE id = $1", hold_id)
        if existing is None:
            slot = await self._slot(slot_id)
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_person(conn, person_id)
                active = await conn.fetchval(
                    """
                    SELECT count(*) FROM bff.appointment_holds
                    WHERE person_id = $1 AND consumed_at IS NULL AND released_at IS NULL AND expires_at > now()
                    """,
                    person_id,
                )
                if active >= self.hold_quota:
                    raise ProblemError(
                        f"at most {self.hold_quota} seats may be held at once; book or let one go first",
                        status=409,
                        code="hold_quota_exceeded",
                        extra={"quota": self.hold_quota},
                    )
                capacity, taken = await self._lock_and_count(conn, slot["slot_id"])
                if taken >= capacity:
                    raise ProblemError("every seat of this slot is taken", status=409, code="slot_full")
                existing = await conn.fetchrow(
                    """
                    INSERT INTO bff.appointment_holds (id, person_id, slot_id, expires_at)
                    VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING *
                    """,
                    hold_id,
                    person_id,
                    slot["slot_id"],
                    self.hold_ttl_s,
                )
        assert existing is not None
        try:
            held = await self.client.hold(str(hold_id), existing["slot_id"], person_id, self.hold_ttl_s)
        except BookingRefused as exc:
            await self.pool.execute(
                "UPDATE bff.appointment_holds SET released_at = now() WHERE id = $1", hold_id
            )
            raise _refusal(exc) from None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE bff.appointment_holds SET upstream_hold_id = $2 WHERE id = $1 RETURNING *",
                hold_id,
                held.hold_id,
            )
            assert row is not None
            out = HoldOut(hold_id=str(hold_id), slot_id=row["slot_id"], expires_at=iso(row["expires_at"]))
            return await ctx.finish(conn, out)

    # --- bookings ---

    async def _standing_warning(self, person_id: str) -> bool:
        standing = await self.client.standing(person_id)
        if standing.blocked_until is not None:
            raise ProblemError(
                "online booking is suspended after two missed appointments in a month",
                status=403,
                code="booking_blocked",
                extra={"blockedUntil": iso(standing.blocked_until)},
            )
        return standing.warning

    @staticmethod
    async def _check_caps(
        conn: Conn, person_id: str, starts_at: datetime, *, ignore: uuid.UUID | None = None
    ) -> None:
        day = starts_at.astimezone(CHINA).date()
        monday = day - timedelta(days=day.weekday())
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE (starts_at AT TIME ZONE 'Asia/Shanghai')::date = $2) AS day,
                   count(*) FILTER (WHERE (starts_at AT TIME ZONE 'Asia/Shanghai')::date BETWEEN $3 AND $3 + 6) AS week,
                   count(*) FILTER (WHERE date_trunc('month', starts_at AT TIME ZONE 'Asia/Shanghai')::date = $4) AS month
            FROM bff.appointments
            WHERE person_id = $1 AND status IN ('pending', 'booked', 'checked_in', 'no_show')
              AND id IS DISTINCT FROM $5
            """,
            person_id,
            day,
            monday,
            day.replace(day=1),
            ignore,
        )
        assert row is not None
        for period, limit, zh in CAPS:
            if row[period] >= limit:
                raise ProblemError(
                    f"booking limit reached: {_CAP_EN[period]} ({zh})",
                    status=409,
                    code="booking_cap_reached",
                    extra={"period": period, "limit": limit},
                )

    async def book(
        self, ctx: IdemContext, person_id: str, slot_id: str | None, hold_id: str | None
    ) -> Recorded[AppointmentOut]:
        appointment_id = ctx.request_id
        row = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", appointment_id)
        warning = False
        upstream_hold: str | None = None
        if row is None:
            hold = None
            if hold_id is not None:
                hold = await self._own_hold(person_id, hold_id)
                slot_id = hold["slot_id"]
                upstream_hold = hold["upstream_hold_id"]
            assert slot_id is not None
            slot = await self._slot(slot_id)
            warning = await self._standing_warning(person_id)
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_person(conn, person_id)
                await self._check_caps(conn, person_id, slot["starts_at"])
                capacity, taken = await self._lock_and_count(
                    conn, slot["slot_id"], except_hold=hold["id"] if hold else None
                )
                if hold is not None:
                    consumed = await conn.fetchval(
                        """
                        UPDATE bff.appointment_holds SET consumed_at = now()
                        WHERE id = $1 AND consumed_at IS NULL AND released_at IS NULL AND expires_at > now()
                        RETURNING 1
                        """,
                        hold["id"],
                    )
                    if consumed is None:
                        raise ProblemError(
                            "the hold has expired; choose a slot again", status=409, code="hold_expired"
                        )
                if taken >= capacity:
                    raise ProblemError("every seat of this slot is taken", status=409, code="slot_full")
                row = await conn.fetchrow(
                    """
                    INSERT INTO bff.appointments
                        (id, person_id, slot_id, hall_id, item_code, starts_at, ends_at, status, upstream_request_id)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $1) RETURNING *
                    """,
                    appointment_id,
                    person_id,
                    slot["slot_id"],
                    slot["hall_id"],
                    slot["item_code"],
                    slot["starts_at"],
                    slot["ends_at"],
                )
        elif row["status"] == "pending" and hold_id is not None:
            upstream_hold = await self.pool.fetchval(
                "SELECT upstream_hold_id FROM bff.appointment_holds WHERE id = $1 AND person_id = $2",
                _uuid_or_none(hold_id),
                person_id,
            )
        assert row is not None
        if row["status"] == "pending":
            booking = await self._confirm(row["id"], person_id, row["slot_id"], upstream_hold)
            warning = warning or booking.warning
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", appointment_id)
            return await ctx.finish(conn, appointment_out(row, warning=warning))

    async def _confirm(
        self, appointment_id: uuid.UUID, person_id: str, slot_id: str, upstream_hold: str | None
    ) -> Booking:
        """Ask the booking system; a refusal frees our seat, silence keeps it (resolved later)."""
        try:
            booking = await self.client.book(str(appointment_id), slot_id, person_id, upstream_hold)
        except BookingRefused as exc:
            await self.pool.execute(
                "UPDATE bff.appointments SET status = 'failed', updated_at = now() WHERE id = $1 AND status = 'pending'",
                appointment_id,
            )
            raise _refusal(exc) from None
        async with self.pool.acquire() as conn, conn.transaction():
            booked = await conn.fetchrow(
                """
                UPDATE bff.appointments SET status = 'booked', booking_no = $2, updated_at = now()
                WHERE id = $1 AND status = 'pending' RETURNING *
                """,
                appointment_id,
                booking.booking_no,
            )
            if booked is not None:
                await _announce(conn, booked, "booked")
        return booking

    async def _own_hold(self, person_id: str, hold_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.appointment_holds WHERE id = $1 AND person_id = $2",
            _uuid_or_none(hold_id),
            person_id,
        )
        if row is None:
            raise ProblemError(f"no hold {hold_id[:64]}", status=404, code="hold_not_found")
        if (
            row["consumed_at"] is not None
            or row["released_at"] is not None
            or row["expires_at"] <= datetime.now(UTC)
        ):
            raise ProblemError("the hold has expired; choose a slot again", status=409, code="hold_expired")
        return row

    async def cancel(self, ctx: IdemContext, row: asyncpg.Record) -> Recorded[AppointmentOut]:
        if row["status"] == "booked":
            try:
                await self.client.cancel(str(ctx.request_id), row["booking_no"])
            except BookingRefused as exc:
                raise _refusal(exc) from None
        elif row["status"] != "cancelled":
            raise ProblemError(
                f"an appointment that is {row['status']} cannot be cancelled",
                status=409,
                code="appointment_not_cancellable",
            )
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchrow(
                "UPDATE bff.appointments SET status = 'cancelled', updated_at = now() WHERE id = $1 RETURNING *",
                row["id"],
            )
            if updated is not None and row["status"] != "cancelled":
                await _announce(conn, updated, "cancelled")
            return await ctx.finish(conn, appointment_out(updated))

    async def reschedule(
        self, ctx: IdemContext, row: asyncpg.Record, slot_id: str
    ) -> Recorded[AppointmentOut]:
        new_id = ctx.derive("reschedule")
        new = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", new_id)
        if new is None:
            if row["status"] != "booked":
                raise ProblemError(
                    f"an appointment that is {row['status']} cannot be rescheduled",
                    status=409,
                    code="appointment_not_reschedulable",
                )
            slot = await self._slot(slot_id)
            if (slot["hall_id"], slot["item_code"]) != (row["hall_id"], row["item_code"]):
                raise ProblemError(
                    "a new time must be for the same item in the same hall",
                    status=422,
                    code="appointment_not_reschedulable",
                )
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_person(conn, row["person_id"])
                await self._check_caps(conn, row["person_id"], slot["starts_at"], ignore=row["id"])
                capacity, taken = await self._lock_and_count(conn, slot["slot_id"])
                if taken >= capacity:
                    raise ProblemError("every seat of this slot is taken", status=409, code="slot_full")
                new = await conn.fetchrow(
                    """
                    INSERT INTO bff.appointments
                        (id, person_id, slot_id, hall_id, item_code, starts_at, ends_at, status,
                         upstream_request_id, rescheduled_from)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $1, $8) RETURNING *
                    """,
                    new_id,
                    row["person_id"],
                    slot["slot_id"],
                    slot["hall_id"],
                    slot["item_code"],
                    slot["starts_at"],
                    slot["ends_at"],
                    row["id"],
                )
        assert new is not None
        if new["status"] == "pending":
            await self._move(new_id, row["id"], row["booking_no"], new["slot_id"])
        async with self.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", new_id)
            return await ctx.finish(conn, appointment_out(current))

    async def _move(self, new_id: uuid.UUID, old_id: uuid.UUID, old_booking_no: str, slot_id: str) -> Booking:
        """Ask the booking system to move a booking; its answer settles both rows at once, once.

        A refusal fails the new row and leaves the old booking as it was; silence keeps the new
        row pending (resolved later, by the resident's retry or `resolve_pending`)."""
        try:
            booking = await self.client.reschedule(str(new_id), old_booking_no, slot_id)
        except BookingRefused as exc:
            await self.pool.execute(
                "UPDATE bff.appointments SET status = 'failed', updated_at = now() WHERE id = $1 AND status = 'pending'",
                new_id,
            )
            raise _refusal(exc) from None
        async with self.pool.acquire() as conn, conn.transaction():
            # Only the first to settle the pending row releases the old one (a retry and the
            # resolver may both have the answer; the row lock orders them).
            moved = await conn.fetchrow(
                """
                UPDATE bff.appointments SET status = 'booked', booking_no = $2, updated_at = now()
                WHERE id = $1 AND status = 'pending' RETURNING *
                """,
                new_id,
                booking.booking_no,
            )
            if moved is not None:
                await _announce(conn, moved, "rescheduled")
                await conn.execute(
                    "UPDATE bff.appointments SET status = 'cancelled', updated_at = now() WHERE id = $1",
                    old_id,
                )
        return booking

    async def check_in(self, ctx: IdemContext, row: asyncpg.Record) -> Recorded[AppointmentOut]:
        if row["status"] != "booked" or row["booking_no"] is None:
            raise ProblemError(
                f"an appointment that is {row['status']} cannot be checked in",
                status=409,
                code="check_in_not_possible",
            )
        try:
            booking = await self.client.check_in(str(ctx.request_id), row["booking_no"])
        except BookingRefused as exc:
            raise _refusal(exc) from None
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchrow(
                """
                UPDATE bff.appointments SET status = 'checked_in', ticket_no = $2, updated_at = now()
                WHERE id = $1 RETURNING *
                """,
                row["id"],
                booking.ticket_no,
            )
            return await ctx.finish(conn, appointment_out(updated))

    async def refresh(self, row: asyncpg.Record) -> asyncpg.Record:
        """Pick up what happened at the hall (no-show marks, window check-ins); keep ours if silent."""
        if row["booking_no"] is None or row["status"] not in ("booked", "checked_in"):
            return row
        try:
            booking = await self.client.get(row["booking_no"])
        except (UpstreamUnavailable, BookingRefused, ProblemError):
            return row
        if booking.status in ("no_show", "checked_in", "cancelled") and booking.status != row["status"]:
            updated = await self.pool.fetchrow(
                """
                UPDATE bff.appointments SET status = $2, ticket_no = coalesce($3, ticket_no), updated_at = now()
                WHERE id = $1 RETURNING *
                """,
                row["id"],
                booking.status,
                booking.ticket_no,
            )
            return updated if updated is not None else row
        return row

    async def resolve_pending(self, older_than_s: int = 60, limit: int = 50) -> int:
        """Bookings and reschedules whose upstream answer was lost: ask again with the same request id."""
        rows = await self.pool.fetch(
            """
            SELECT a.*, h.upstream_hold_id, o.booking_no AS old_booking_no FROM bff.appointments a
            -- The hold this booking used: consumed in the transaction that inserted it (both now()),
            -- not any other consumed hold of that person and slot (one row per booking, right hold).
            -- A reschedule uses no hold; it moves the booking it was made from.
            LEFT JOIN bff.appointment_holds h ON a.rescheduled_from IS NULL
                 AND h.person_id = a.person_id AND h.slot_id = a.slot_id AND h.consumed_at = a.created_at
            LEFT JOIN bff.appointments o ON o.id = a.rescheduled_from
            WHERE a.status = 'pending'
              AND a.created_at < now() - make_interval(secs => $1)
            ORDER BY a.created_at LIMIT $2
            """,
            older_than_s,
            limit,
        )
        done = 0
        for row in rows:
            try:
                if row["rescheduled_from"] is None:
                    await self._confirm(row["id"], row["person_id"], row["slot_id"], row["upstream_hold_id"])
                else:
                    await self._move(
                        row["id"], row["rescheduled_from"], row["old_booking_no"], row["slot_id"]
                    )
                done += 1
            except ProblemError:
                continue
        return done

    async def remind_tomorrow(self, limit: int = 500) -> int:
        """The job: a reminder for every booking that starts tomorrow (China time), once each."""
        tomorrow = datetime.now(CHINA).date() + timedelta(days=1)
        start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=CHINA)
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.appointments WHERE status = 'booked' AND starts_at >= $1 AND starts_at < $2
            ORDER BY starts_at LIMIT $3
            """,
            start,
            start + timedelta(days=1),
            limit,
        )
        told = 0
        for row in rows:
            async with self.pool.acquire() as conn, conn.transaction():
                told += await outbox.enqueue(
                    conn,
                    "appointment.reminder",
                    row["person_id"],
                    f"appointment-reminder:{row['id']}",
                    AppointmentReminder(
                        appointment_id=str(row["id"]),
                        item_code=row["item_code"],
                        hall_id=row["hall_id"],
                        starts_at=row["starts_at"].astimezone(CHINA).isoformat(),
                        booking_no=row["booking_no"] or "",
                    ),
                )
        return told


async def _announce(conn: Conn, row: asyncpg.Record, event: str) -> None:
    """Tell the resident (push/) in the transaction that changed the booking."""
    await outbox.enqueue(
        conn,
        "appointment.changed",
        row["person_id"],
        f"appointment:{row['id']}:{event}",
        AppointmentChanged(
            appointment_id=str(row["id"]),
            item_code=row["item_code"],
            hall_id=row["hall_id"],
            starts_at=row["starts_at"].astimezone(CHINA).isoformat(),
            booking_no=row["booking_no"] or "",
            event=event,
        ),
    )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
