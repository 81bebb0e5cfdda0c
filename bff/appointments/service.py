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

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg
import asyncpg.pool
import msgspec

from adapters.booking.client import BookingClient, BookingRefused
from adapters.booking.schemas import Booking, Hold, Slot
from adapters.errors import BadUpstreamAnswer, NotSent, ProblemError, UpstreamUnavailable
from auth import acting
from auth.principal import Principal
from bff.appointments.schemas import (
    AppointmentFreshness,
    AppointmentOut,
    AppointmentPage,
    CalendarDay,
    CalendarOut,
    DaySlotsOut,
    HoldOut,
    SlotOut,
)
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.clock import CHINA
from bff.platform.paging import keyset_after, keyset_page
from push import outbox
from push.topics import AppointmentChanged, AppointmentReminder

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


LIVE = ("pending", "booked", "checked_in", "cancelling")
# Answers that leave an upstream mutation in doubt: it may or may not have happened.
IN_DOUBT = (UpstreamUnavailable, BadUpstreamAnswer)
# The booking calendar: how many days ahead it shows (the booking window is 10 working days, about
# two weeks), and how many day queries it sends the booking system at once.
CALENDAR_DAYS = 16
CALENDAR_CONCURRENCY = 4
# DOMAIN.md, rules seen in real halls: 1 a day, 2 a week, 6 a month.
CAPS = (("day", 1, "每天最多预约1次"), ("week", 2, "每周最多预约2次"), ("month", 6, "每月最多预约6次"))
_CAP_EN = {"day": "one booking a day", "week": "two bookings a week", "month": "six bookings a month"}
_CAP_ZH = {period: zh for period, _, zh in CAPS}
_STATUS_ZH = {
    "pending": "确认中",
    "booked": "已预约",
    "checked_in": "已签到",
    "cancelling": "取消中",
    "cancelled": "已取消",
    "no_show": "未到",
    "failed": "未成功",
}
# What an upstream mutation left undone, in Chinese (see _in_doubt).
_DONE_ZH = {"held": "占号", "booked": "预约", "cancelled": "取消", "moved": "改约"}


def iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat()


Place = tuple[str | None, str | None, str | None]  # hall name, hall address, item name
PlaceLookup = Callable[[str, str], Awaitable[Place]]


def appointment_out(
    row: asyncpg.Record | None,
    *,
    warning: bool = False,
    place: Place = (None, None, None),
    rescheduled_to: str | None = None,
) -> AppointmentOut:
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
        hall_name=place[0],
        hall_address=place[1],
        item_name=place[2],
        rescheduled_to=rescheduled_to,
    )


def _refusal(exc: BookingRefused) -> ProblemError:
    """The booking system's refusal, told in our own codes."""
    reason = exc.reason
    if reason == "slot_full":
        return ProblemError(
            "every seat of this slot is taken", status=409, code="slot_full", detail_zh="该时段已约满"
        )
    if reason == "person_cap_reached":
        period = exc.refusal.period or "day"
        return ProblemError(
            f"booking limit reached: {_CAP_EN.get(period, period)}",
            status=409,
            code="booking_cap_reached",
            extra={"period": period},
            detail_zh=f"已达预约上限：{_CAP_ZH.get(period, period)}",
        )
    if reason == "person_blocked":
        return ProblemError(
            "online booking is suspended after two missed appointments in a month",
            status=403,
            code="booking_blocked",
            extra={"blockedUntil": exc.refusal.blocked_until},
            detail_zh="一个月内两次预约未到，网上预约已暂停",
        )
    if reason in {"date_out_of_window"}:
        return ProblemError(
            exc.refusal.message, status=422, code="date_out_of_window", detail_zh="该日期不在可预约范围内"
        )
    if reason in {"item_not_bookable"}:
        return ProblemError(
            exc.refusal.message,
            status=422,
            code="item_not_bookable_here",
            detail_zh="该大厅不受理此事项的预约",
        )
    if reason in {"hall_not_found"}:
        return ProblemError(
            exc.refusal.message, status=404, code="hall_not_found", detail_zh="未找到该服务大厅"
        )
    if reason in {"slot_not_found"}:
        return ProblemError(
            exc.refusal.message, status=404, code="slot_not_found", detail_zh="未找到该预约时段"
        )
    if reason in {"not_today", "not_checkable"}:
        return ProblemError(
            "check-in is possible on the day of the appointment only",
            status=409,
            code="check_in_not_possible",
            detail_zh="只能在预约当天签到",
        )
    if reason == "request_voided":
        return _voided()
    if reason in {"not_cancellable", "too_late"}:
        return ProblemError(
            exc.refusal.message, status=409, code="appointment_not_cancellable", detail_zh="该预约已不能取消"
        )
    if reason in {"not_reschedulable", "other_service"}:
        return ProblemError(
            exc.refusal.message,
            status=409,
            code="appointment_not_reschedulable",
            detail_zh="该预约已不能改约",
        )
    return ProblemError(
        exc.refusal.message or reason, status=409, code="conflict", detail_zh="预约系统拒绝了此操作"
    )


def _in_doubt(exc: ProblemError, done: str) -> UpstreamUnavailable:
    """The 503 a resident gets for an upstream mutation whose outcome is not known."""
    what = _DONE_ZH.get(done, done)
    if isinstance(exc, NotSent):
        detail = f"the booking system is unavailable; nothing was {done}"
        zh = f"预约系统暂不可用，未做任何{what}"
    else:
        detail = (
            "the booking system did not answer, so the outcome is not known yet: retry with the same"
            f" Idempotency-Key to learn it; unless a retry confirms it, nothing stays {done}"
        )
        zh = f"预约系统未应答，结果尚不确定：请用同一 Idempotency-Key 重试以获知结果；未经重试确认的{what}不会生效"
    return UpstreamUnavailable(detail, headers=exc.headers or None, detail_zh=zh)


def _voided() -> ProblemError:
    """A retry of a key whose attempt was answered 503 and then ended failed (see resolve_pending)."""
    return ProblemError(
        "that attempt was given up after the booking system did not answer; submit it again",
        status=409,
        code="attempt_voided",
        detail_zh="预约系统未应答，该次操作已作废，请重新提交",
    )


class AppointmentService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: BookingClient,
        *,
        hold_ttl_s: int,
        hold_quota: int,
        hold_day_quota: int = 2,
        places: PlaceLookup | None = None,
    ) -> None:
        self.pool = pool
        self.client = client
        self.hold_ttl_s = hold_ttl_s
        self.hold_quota = hold_quota
        self.hold_day_quota = hold_day_quota
        self.places = places
        # The waitlist's port: told after a seat is freed through us (set by the composition root).
        self.seat_freed: Callable[[str], Awaitable[int]] | None = None

    async def _freed(self, slot_id: str) -> None:
        if self.seat_freed is not None:
            await self.seat_freed(slot_id)

    async def out(
        self, row: asyncpg.Record | None, *, warning: bool = False, rescheduled_to: str | None = None
    ) -> AppointmentOut:
        """An appointment as the phone shows it: with its hall and item named."""
        assert row is not None
        place: Place = (None, None, None)
        if self.places is not None:
            place = await self.places(row["hall_id"], row["item_code"])
        return appointment_out(row, warning=warning, place=place, rescheduled_to=rescheduled_to)

    # --- reading ---

    async def slots(self, hall_id: str, item_code: str, day: date) -> DaySlotsOut:
        if day < datetime.now(CHINA).date():
            raise ProblemError(
                "date: must not be in the past",
                status=422,
                code="date_in_past",
                detail_zh="date：不能早于今天",
            )
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

    async def calendar(self, hall_id: str, item_code: str) -> CalendarOut:
        """The next CALENDAR_DAYS days of one item in one hall: which are bookable, how full.

        The booking system answers per day; days outside its window come back as a refusal, which
        here is `inWindow: false`, not an error. At most CALENDAR_CONCURRENCY calls at a time."""
        today = datetime.now(CHINA).date()
        days = [today + timedelta(days=n) for n in range(1, CALENDAR_DAYS + 1)]
        gate = asyncio.Semaphore(CALENDAR_CONCURRENCY)

        async def one(day: date) -> CalendarDay:
            async with gate:
                try:
                    slots = await self.day_slots(hall_id, item_code, day)
                except ProblemError as exc:
                    if exc.code != "date_out_of_window":
                        raise
                    return CalendarDay(
                        date=day.isoformat(),
                        open=False,
                        bookable=False,
                        in_window=False,
                        capacity=0,
                        available=0,
                        fullness=0.0,
                    )
            capacity = sum(s.capacity for s in slots)
            available = sum(s.available for s in slots)
            return CalendarDay(
                date=day.isoformat(),
                open=bool(slots),
                bookable=available > 0,
                in_window=True,
                capacity=capacity,
                available=available,
                fullness=round(1 - available / capacity, 3) if capacity else 0.0,
            )

        found = list(await asyncio.gather(*(one(day) for day in days)))
        first = next((d.date for d in found if d.bookable), None)
        return CalendarOut(hall_id=hall_id, item_code=item_code, first_bookable=first, days=found)

    async def mine(
        self, principal: Principal, limit: int, cursor: str | None, status: str | None = None
    ) -> AppointmentPage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
            """
            SELECT a.*, (SELECT n.id FROM bff.appointments n
                         WHERE n.rescheduled_from = a.id AND n.status <> 'failed'
                         ORDER BY n.created_at DESC LIMIT 1) AS rescheduled_to
            FROM bff.appointments a
            WHERE a.person_id = $1 AND a.status <> 'failed'
              AND ($5::text IS NULL OR a.status = $5)
              AND ($2::timestamptz IS NULL OR (a.starts_at, a.id) > ($2, $3))
              AND ($6::text[] IS NULL OR a.item_code = ANY($6))
            ORDER BY a.starts_at, a.id LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
            status,
            acting.within_items(principal),
        )
        page, following = keyset_page(rows, limit, "starts_at")
        items = [await self.out(r, rescheduled_to=_str_or_none(r["rescheduled_to"])) for r in page]
        return AppointmentPage(items=items, next_cursor=following)

    async def upcoming(self, person_id: str, limit: int = 20) -> list[AppointmentOut]:
        """Read port for home: the resident's appointments still ahead (booked, or being booked),
        soonest first."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.appointments
            WHERE person_id = $1 AND status IN ('pending', 'booked') AND ends_at > now()
            ORDER BY starts_at, id LIMIT $2
            """,
            person_id,
            limit,
        )
        return [await self.out(r) for r in rows]

    async def own(self, principal: Principal, appointment_id: str) -> asyncpg.Record:
        """The caller's appointment, else a 404 (another resident's is audited)."""
        ident = parse_uuid(appointment_id, "appointment")
        row = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", ident)
        row = await owned(self.pool, principal, "appointment", appointment_id, row)
        acting.check_item(principal, row["item_code"])
        return row

    async def view(self, principal: Principal, appointment_id: str) -> AppointmentOut:
        row, confirmed = await self._refreshed(await self.own(principal, appointment_id))
        following = await self.pool.fetchval(
            """SELECT id FROM bff.appointments WHERE rescheduled_from = $1 AND status <> 'failed'
               ORDER BY created_at DESC LIMIT 1""",
            row["id"],
        )
        out = await self.out(row, rescheduled_to=_str_or_none(following))
        if confirmed:
            out.freshness = AppointmentFreshness(status="ok", as_of=iso(datetime.now(UTC)))
        elif row["status"] in ("pending", "cancelling", "booked", "checked_in"):
            # Our copy, not confirmed now: a change in doubt, or the booking system not answering.
            out.freshness = AppointmentFreshness(status="stale", as_of=iso(row["updated_at"]))
        else:
            out.freshness = AppointmentFreshness(status="ok", as_of=iso(row["updated_at"]))  # final here
        return out

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
            raise ProblemError(
                "this slot has already begun", status=422, code="slot_in_past", detail_zh="该时段已经开始"
            )
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
                     WHERE slot_id = $1 AND status IN ('pending', 'booked', 'checked_in', 'cancelling'))
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

    async def hold(self, ctx: IdemContext, principal: Principal, slot_id: str) -> Recorded[HoldOut]:
        """Take a seat for a few minutes, only if the hold could become a booking.

        A hold is refused when its booking would be: the person blocked or at a booking cap,
        a second hold of the same slot, more than `hold_quota` at once or `hold_day_quota` on one
        day. A hold the booking system did not confirm (503, lost answer) is released here at
        once: it keeps no seat and counts against no quota; a retry with the same key takes it
        again (the booking system de-duplicates the request id). One sent and not answered is
        voided there by `resolve_pending`, so it keeps no seat upstream either."""
        hold_id = ctx.request_id
        person_id = principal.person_id
        existing = await self.pool.fetchrow("SELECT * FROM bff.appointment_holds WHERE id = $1", hold_id)
        if existing is None or (existing["released_at"] is not None and existing["upstream_hold_id"] is None):
            slot = await self._slot(slot_id if existing is None else existing["slot_id"])
            acting.check_item(principal, slot["item_code"])
            await self._standing_warning(person_id)
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_person(conn, person_id)
                await self._check_hold_rules(conn, person_id, slot)
                capacity, taken = await self._lock_and_count(conn, slot["slot_id"])
                if taken >= capacity:
                    raise ProblemError(
                        "every seat of this slot is taken",
                        status=409,
                        code="slot_full",
                        detail_zh="该时段已约满",
                    )
                existing = await conn.fetchrow(
                    """
                    INSERT INTO bff.appointment_holds (id, person_id, slot_id, expires_at)
                    VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                    ON CONFLICT (id) DO UPDATE SET released_at = NULL, expires_at = EXCLUDED.expires_at
                    RETURNING *
                    """,
                    hold_id,
                    person_id,
                    slot["slot_id"],
                    self.hold_ttl_s,
                )
        assert existing is not None
        try:
            held = await self.client.hold(
                _hold_request_id(existing), existing["slot_id"], person_id, self.hold_ttl_s
            )
        except BookingRefused as exc:
            await self.pool.execute(
                "UPDATE bff.appointment_holds SET released_at = now() WHERE id = $1", hold_id
            )
            raise _refusal(exc) from None
        except IN_DOUBT as exc:
            # Not confirmed: give the seat and the quota back now. Should the booking system have
            # made it, a retry of this key takes it up, or the resolver voids it there.
            await self.pool.execute(
                """
                UPDATE bff.appointment_holds SET released_at = now(),
                       in_doubt_at = CASE WHEN $2 THEN in_doubt_at ELSE now() END
                WHERE id = $1 AND upstream_hold_id IS NULL AND consumed_at IS NULL
                """,
                hold_id,
                isinstance(exc, NotSent),
            )
            raise _in_doubt(exc, "held") from None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE bff.appointment_holds SET upstream_hold_id = $2, released_at = NULL, in_doubt_at = NULL
                WHERE id = $1 AND consumed_at IS NULL RETURNING *
                """,
                hold_id,
                held.hold_id,
            )
            if row is None:
                row = await conn.fetchrow("SELECT * FROM bff.appointment_holds WHERE id = $1", hold_id)
            assert row is not None
            out = HoldOut(hold_id=str(hold_id), slot_id=row["slot_id"], expires_at=iso(row["expires_at"]))
            return await ctx.finish(conn, out)

    async def _check_hold_rules(self, conn: Conn, person_id: str, slot: asyncpg.Record) -> None:
        """Refuse a hold that could not become a booking, or that hoards seats."""
        row = await conn.fetchrow(
            """
            SELECT count(*) AS active,
                   count(*) FILTER (WHERE h.slot_id = $2) AS same_slot,
                   count(*) FILTER (WHERE (s.starts_at AT TIME ZONE 'Asia/Shanghai')::date
                                          = ($3::timestamptz AT TIME ZONE 'Asia/Shanghai')::date) AS same_day
            FROM bff.appointment_holds h JOIN bff.slots s USING (slot_id)
            WHERE h.person_id = $1 AND h.consumed_at IS NULL AND h.released_at IS NULL
              AND h.expires_at > now()
            """,
            person_id,
            slot["slot_id"],
            slot["starts_at"],
        )
        assert row is not None
        if row["same_slot"] > 0:
            raise ProblemError(
                "you already hold a seat of this slot; book it or let it go",
                status=409,
                code="hold_duplicate",
                detail_zh="您已占用该时段的一个号源，请预约或释放",
            )
        if row["active"] >= self.hold_quota:
            raise ProblemError(
                f"at most {self.hold_quota} seats may be held at once; book or let one go first",
                status=409,
                code="hold_quota_exceeded",
                extra={"quota": self.hold_quota},
                detail_zh=f"同时最多占用 {self.hold_quota} 个号源，请先预约或释放一个",
            )
        if row["same_day"] >= self.hold_day_quota:
            raise ProblemError(
                f"at most {self.hold_day_quota} seats may be held for one day",
                status=409,
                code="hold_quota_exceeded",
                extra={"quota": self.hold_day_quota, "period": "day"},
                detail_zh=f"同一天最多占用 {self.hold_day_quota} 个号源",
            )
        # A hold whose booking would break a cap takes no seat (the cap counts live bookings).
        await self._check_caps(conn, person_id, slot["starts_at"])

    async def release(self, ctx: IdemContext, person_id: str, hold_id: str) -> Recorded[HoldOut]:
        """Let a hold go: the seat is free here at once, and the booking system is told."""
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.appointment_holds WHERE id = $1 AND person_id = $2",
            _uuid_or_none(hold_id),
            person_id,
        )
        if row is None:
            raise ProblemError(
                f"no hold {hold_id[:64]}",
                status=404,
                code="hold_not_found",
                detail_zh=f"未找到占号 {hold_id[:64]}",
            )
        if row["consumed_at"] is not None:
            raise ProblemError(
                "this hold became a booking; cancel the booking",
                status=409,
                code="hold_expired",
                detail_zh="该占号已转为预约，请取消预约",
            )
        if row["released_at"] is None:
            row = await self.pool.fetchrow(
                """
                UPDATE bff.appointment_holds SET released_at = now()
                WHERE id = $1 AND consumed_at IS NULL RETURNING *
                """,
                row["id"],
            )
            if row is None:
                raise ProblemError(
                    "this hold became a booking; cancel the booking",
                    status=409,
                    code="hold_expired",
                    detail_zh="该占号已转为预约，请取消预约",
                )
        if row["upstream_hold_id"] is not None:
            try:
                await self.client.release_hold(row["upstream_hold_id"])
            except (*IN_DOUBT, BookingRefused):
                # Ours is free already; theirs lapses at its TTL. A retry of this key tells it again.
                pass
        async with self.pool.acquire() as conn, conn.transaction():
            out = HoldOut(hold_id=str(row["id"]), slot_id=row["slot_id"], expires_at=iso(row["released_at"]))
            recorded = await ctx.finish(conn, out)
        await self._freed(row["slot_id"])
        return recorded

    # --- bookings ---

    async def _standing_warning(self, person_id: str) -> bool:
        standing = await self.client.standing(person_id)
        if standing.blocked_until is not None:
            raise ProblemError(
                "online booking is suspended after two missed appointments in a month",
                status=403,
                code="booking_blocked",
                extra={"blockedUntil": iso(standing.blocked_until)},
                detail_zh="一个月内两次预约未到，网上预约已暂停",
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
            WHERE person_id = $1 AND status IN ('pending', 'booked', 'checked_in', 'cancelling', 'no_show')
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
                    detail_zh=f"已达预约上限：{zh}",
                )

    async def book(
        self, ctx: IdemContext, principal: Principal, slot_id: str | None, hold_id: str | None
    ) -> Recorded[AppointmentOut]:
        appointment_id = ctx.request_id
        person_id = principal.person_id
        row = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", appointment_id)
        warning = False
        upstream_hold: str | None = None
        fresh = row is None
        if row is None:
            hold = None
            if hold_id is not None:
                hold = await self._own_hold(person_id, hold_id)
                slot_id = hold["slot_id"]
                upstream_hold = hold["upstream_hold_id"]
            assert slot_id is not None
            slot = await self._slot(slot_id)
            acting.check_item(principal, slot["item_code"])
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
                            "the hold has expired; choose a slot again",
                            status=409,
                            code="hold_expired",
                            detail_zh="占号已过期，请重新选择时段",
                        )
                if taken >= capacity:
                    raise ProblemError(
                        "every seat of this slot is taken",
                        status=409,
                        code="slot_full",
                        detail_zh="该时段已约满",
                    )
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
        elif row["status"] == "failed":
            raise _voided()
        elif row["status"] == "pending" and hold_id is not None:
            upstream_hold = await self.pool.fetchval(
                "SELECT upstream_hold_id FROM bff.appointment_holds WHERE id = $1 AND person_id = $2",
                _uuid_or_none(hold_id),
                person_id,
            )
        assert row is not None
        if row["status"] == "pending":
            booking = await self._confirm(row["id"], person_id, row["slot_id"], upstream_hold, fresh=fresh)
            warning = warning or booking.warning
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", appointment_id)
            return await ctx.finish(conn, await self.out(row, warning=warning))

    async def _confirm(
        self,
        appointment_id: uuid.UUID,
        person_id: str,
        slot_id: str,
        upstream_hold: str | None,
        *,
        fresh: bool = False,
    ) -> Booking:
        """Ask the booking system; a refusal frees our seat, silence keeps it (resolved later).

        `fresh`: the row was inserted by this very call, so a call refused before sending (open
        breaker) proves the booking system never heard of it and the row fails at once."""
        try:
            booking = await self.client.book(str(appointment_id), slot_id, person_id, upstream_hold)
        except BookingRefused as exc:
            await self._fail(appointment_id)
            raise _refusal(exc) from None
        except IN_DOUBT as exc:
            await self._answered_failure(appointment_id, exc, fresh=fresh)
            raise _in_doubt(exc, "booked") from None
        async with self.pool.acquire() as conn, conn.transaction():
            booked = await conn.fetchrow(
                """
                UPDATE bff.appointments SET status = 'booked', booking_no = $2, told_failed_at = NULL,
                       updated_at = now()
                WHERE id = $1 AND status = 'pending' RETURNING *
                """,
                appointment_id,
                booking.booking_no,
            )
            if booked is not None:
                await _announce(conn, booked, "booked")
        return booking

    async def _fail(self, appointment_id: uuid.UUID) -> None:
        await self.pool.execute(
            "UPDATE bff.appointments SET status = 'failed', updated_at = now() WHERE id = $1 AND status = 'pending'",
            appointment_id,
        )

    async def _answered_failure(self, appointment_id: uuid.UUID, exc: ProblemError, *, fresh: bool) -> None:
        """The resident is about to be told 503 for this pending row: never complete it behind
        their back. Nothing sent for a fresh row: failed now. Otherwise marked, so that the
        resolver ends it failed unless a retry of the key learns that it went through."""
        if fresh and isinstance(exc, NotSent):
            # Never sent: as if never asked. The row goes (and the hold it used comes back), so a
            # retry of the same key after Retry-After starts afresh.
            async with self.pool.acquire() as conn, conn.transaction():
                gone = await conn.fetchrow(
                    "DELETE FROM bff.appointments WHERE id = $1 AND status = 'pending' RETURNING *",
                    appointment_id,
                )
                if gone is not None:
                    await conn.execute(
                        """
                        UPDATE bff.appointment_holds SET consumed_at = NULL
                        WHERE person_id = $1 AND slot_id = $2 AND consumed_at = $3
                        """,
                        gone["person_id"],
                        gone["slot_id"],
                        gone["created_at"],
                    )
            return
        await self.pool.execute(
            """
            UPDATE bff.appointments SET told_failed_at = coalesce(told_failed_at, now()), updated_at = now()
            WHERE id = $1 AND status = 'pending'
            """,
            appointment_id,
        )

    async def _own_hold(self, person_id: str, hold_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.appointment_holds WHERE id = $1 AND person_id = $2",
            _uuid_or_none(hold_id),
            person_id,
        )
        if row is None:
            raise ProblemError(
                f"no hold {hold_id[:64]}",
                status=404,
                code="hold_not_found",
                detail_zh=f"未找到占号 {hold_id[:64]}",
            )
        if (
            row["consumed_at"] is not None
            or row["released_at"] is not None
            or row["expires_at"] <= datetime.now(UTC)
        ):
            raise ProblemError(
                "the hold has expired; choose a slot again",
                status=409,
                code="hold_expired",
                detail_zh="占号已过期，请重新选择时段",
            )
        return row

    async def cancel(self, ctx: IdemContext, row: asyncpg.Record) -> Recorded[AppointmentOut]:
        """Record the intent (`cancelling`), then tell the booking system; its answer settles it.

        While `cancelling` the seat and the caps stay counted: they are freed once the booking
        system's truth is known (its answer, a later cancel retrying the same request, or the
        resolver). A refusal puts the booking back as it was."""
        if row["status"] == "cancelled":
            async with self.pool.acquire() as conn, conn.transaction():
                return await ctx.finish(conn, appointment_out(row))
        if row["status"] not in ("booked", "cancelling") or row["booking_no"] is None:
            raise ProblemError(
                f"an appointment that is {row['status']} cannot be cancelled",
                status=409,
                code="appointment_not_cancellable",
                detail_zh=f"状态为{_STATUS_ZH.get(row['status'], row['status'])}的预约不能取消",
            )
        intent = await self.pool.fetchrow(
            """
            UPDATE bff.appointments
               SET status = 'cancelling', cancel_request_id = coalesce(cancel_request_id, $2),
                   cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
             WHERE id = $1 AND status IN ('booked', 'cancelling') RETURNING *
            """,
            row["id"],
            ctx.request_id,
        )
        if intent is None:
            # It changed under us (checked in, cancelled by a concurrent request): judge it anew.
            current = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", row["id"])
            assert current is not None
            return await self.cancel(ctx, current)
        fresh = row["status"] == "booked"
        try:
            await self.client.cancel(str(intent["cancel_request_id"]), intent["booking_no"])
        except BookingRefused as exc:
            await self._uncancel(row["id"])
            raise _refusal(exc) from None
        except IN_DOUBT as exc:
            if fresh and isinstance(exc, NotSent):
                await self._uncancel(row["id"])
            else:
                await self.pool.execute(
                    """
                    UPDATE bff.appointments SET told_failed_at = coalesce(told_failed_at, now())
                    WHERE id = $1 AND status = 'cancelling'
                    """,
                    row["id"],
                )
            raise _in_doubt(exc, "cancelled") from None
        async with self.pool.acquire() as conn, conn.transaction():
            await self._cancelled(conn, row["id"])
            updated = await conn.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", row["id"])
            if updated is not None and updated["status"] == "cancelled" and row["status"] != "cancelled":
                await _announce(conn, updated, "cancelled")
            recorded = await ctx.finish(conn, await self.out(updated))
        await self._freed(row["slot_id"])
        return recorded

    @staticmethod
    async def _cancelled(conn: Conn, appointment_id: uuid.UUID) -> None:
        await conn.execute(
            """
            UPDATE bff.appointments SET status = 'cancelled', told_failed_at = NULL, updated_at = now()
            WHERE id = $1 AND status = 'cancelling'
            """,
            appointment_id,
        )

    async def _uncancel(self, appointment_id: uuid.UUID) -> None:
        """The booking system did not cancel: the booking stands, a new cancel starts afresh."""
        await self.pool.execute(
            """
            UPDATE bff.appointments
               SET status = 'booked', cancel_request_id = NULL, cancel_requested_at = NULL,
                   told_failed_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'cancelling'
            """,
            appointment_id,
        )

    async def reschedule(
        self, ctx: IdemContext, row: asyncpg.Record, slot_id: str
    ) -> Recorded[AppointmentOut]:
        new_id = ctx.derive("reschedule")
        new = await self.pool.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", new_id)
        fresh = new is None
        if new is None:
            if row["status"] != "booked":
                raise ProblemError(
                    f"an appointment that is {row['status']} cannot be rescheduled",
                    status=409,
                    code="appointment_not_reschedulable",
                    detail_zh=f"状态为{_STATUS_ZH.get(row['status'], row['status'])}的预约不能改约",
                )
            slot = await self._slot(slot_id)
            if (slot["hall_id"], slot["item_code"]) != (row["hall_id"], row["item_code"]):
                raise ProblemError(
                    "a new time must be for the same item in the same hall",
                    status=422,
                    code="appointment_not_reschedulable",
                    detail_zh="改约须为同一大厅的同一事项",
                )
            async with self.pool.acquire() as conn, conn.transaction():
                await self._lock_person(conn, row["person_id"])
                await self._check_caps(conn, row["person_id"], slot["starts_at"], ignore=row["id"])
                capacity, taken = await self._lock_and_count(conn, slot["slot_id"])
                if taken >= capacity:
                    raise ProblemError(
                        "every seat of this slot is taken",
                        status=409,
                        code="slot_full",
                        detail_zh="该时段已约满",
                    )
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
        if new["status"] == "failed":
            raise _voided()
        if new["status"] == "pending":
            await self._move(new_id, row["id"], row["booking_no"], new["slot_id"], fresh=fresh)
        async with self.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", new_id)
            return await ctx.finish(conn, await self.out(current))

    async def _move(
        self,
        new_id: uuid.UUID,
        old_id: uuid.UUID,
        old_booking_no: str,
        slot_id: str,
        *,
        fresh: bool = False,
    ) -> Booking:
        """Ask the booking system to move a booking; its answer settles both rows at once, once.

        A refusal fails the new row and leaves the old booking as it was; silence keeps the new
        row pending (resolved later, by the resident's retry or `resolve_pending`); a 503 told
        to the resident marks it so that it ends failed (see `_answered_failure`)."""
        try:
            booking = await self.client.reschedule(str(new_id), old_booking_no, slot_id)
        except BookingRefused as exc:
            await self._fail(new_id)
            raise _refusal(exc) from None
        except IN_DOUBT as exc:
            await self._answered_failure(new_id, exc, fresh=fresh)
            raise _in_doubt(exc, "moved") from None
        old_slot: str | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            # Only the first to settle the pending row releases the old one (a retry and the
            # resolver may both have the answer; the row lock orders them).
            moved = await conn.fetchrow(
                """
                UPDATE bff.appointments SET status = 'booked', booking_no = $2, told_failed_at = NULL,
                       updated_at = now()
                WHERE id = $1 AND status = 'pending' RETURNING *
                """,
                new_id,
                booking.booking_no,
            )
            if moved is not None:
                await _announce(conn, moved, "rescheduled")
                old_slot = await conn.fetchval(
                    "UPDATE bff.appointments SET status = 'cancelled', updated_at = now() WHERE id = $1"
                    " RETURNING slot_id",
                    old_id,
                )
        if moved is not None and old_slot is not None:
            await self._freed(old_slot)
        return booking

    async def check_in(self, ctx: IdemContext, row: asyncpg.Record) -> Recorded[AppointmentOut]:
        if row["status"] != "booked" or row["booking_no"] is None:
            raise ProblemError(
                f"an appointment that is {row['status']} cannot be checked in",
                status=409,
                code="check_in_not_possible",
                detail_zh=f"状态为{_STATUS_ZH.get(row['status'], row['status'])}的预约不能签到",
            )
        try:
            booking = await self.client.check_in(str(ctx.request_id), row["booking_no"])
        except BookingRefused as exc:
            # An earlier check-in whose answer was lost may have gone through: the booking
            # system's truth says so, and then it is the answer (the ticket included).
            current, confirmed = await self._refreshed(row)
            if confirmed and current["status"] == "checked_in":
                async with self.pool.acquire() as conn, conn.transaction():
                    return await ctx.finish(conn, appointment_out(current))
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
            return await ctx.finish(conn, await self.out(updated))

    async def _refreshed(self, row: asyncpg.Record) -> tuple[asyncpg.Record, bool]:
        """Pick up what happened at the hall (no-show marks, window check-ins); keep ours if silent.
        Returns the row and whether the booking system confirmed it just now."""
        if row["booking_no"] is None or row["status"] not in ("booked", "checked_in"):
            return row, False
        try:
            booking = await self.client.get(row["booking_no"])
        except (UpstreamUnavailable, BookingRefused, ProblemError):
            return row, False
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
            return (updated if updated is not None else row), True
        return row, True

    async def resolve_pending(self, older_than_s: int = 60, limit: int = 50) -> int:
        """Every appointment mutation left in doubt, settled from the booking system's truth.

        - A booking or reschedule nobody was told about (the answer was lost, the process died):
          ask again with the same request id, which completes it as the resident asked.
        - One the resident was answered 503 for (`told_failed_at`) and did not retry: void the
          request upstream (a late arrival is then refused), undo whatever the booking system did,
          and end it failed — it never takes effect behind the resident's back.
        - A `cancelling` row: a cancel nobody was answered about is sent again; one answered 503
          takes the booking system's verdict on that request (cancelled, or booked again).
        """
        rows = await self.pool.fetch(
            """
            SELECT a.*, h.upstream_hold_id, o.booking_no AS old_booking_no, o.slot_id AS old_slot_id
            FROM bff.appointments a
            -- The hold this booking used: consumed in the transaction that inserted it (both now()),
            -- not any other consumed hold of that person and slot (one row per booking, right hold).
            -- A reschedule uses no hold; it moves the booking it was made from.
            LEFT JOIN bff.appointment_holds h ON a.rescheduled_from IS NULL
                 AND h.person_id = a.person_id AND h.slot_id = a.slot_id AND h.consumed_at = a.created_at
            LEFT JOIN bff.appointments o ON o.id = a.rescheduled_from
            WHERE (a.status = 'pending' AND a.created_at < now() - make_interval(secs => $1))
               OR (a.status = 'cancelling' AND a.cancel_requested_at < now() - make_interval(secs => $1))
            ORDER BY a.created_at LIMIT $2
            """,
            older_than_s,
            limit,
        )
        done = await self._void_holds(limit)
        for row in rows:
            try:
                if row["status"] == "cancelling":
                    await self._resolve_cancel(row)
                elif row["told_failed_at"] is not None:
                    await self._undo(row)
                elif row["rescheduled_from"] is None:
                    await self._confirm(row["id"], row["person_id"], row["slot_id"], row["upstream_hold_id"])
                else:
                    await self._move(
                        row["id"], row["rescheduled_from"], row["old_booking_no"], row["slot_id"]
                    )
                done += 1
            except ProblemError:
                continue
        return done

    async def _void_holds(self, limit: int) -> int:
        """Holds answered 503 after they were sent: the booking system may have made them, and
        would keep that seat from other residents until its TTL. Void the request there (a late
        arrival is refused) and release what it made. No age is waited for: the resident was told
        it failed, and the void settles a request still on its way."""
        ids = await self.pool.fetch(
            """
            SELECT id FROM bff.appointment_holds
            WHERE in_doubt_at IS NOT NULL AND released_at IS NOT NULL AND upstream_hold_id IS NULL
            ORDER BY in_doubt_at LIMIT $1
            """,
            limit,
        )
        done = 0
        for found in ids:
            try:
                done += await self._void_hold(found["id"])
            except (*IN_DOUBT, BookingRefused):
                continue  # the next round asks again
        return done

    async def _void_hold(self, hold_id: uuid.UUID) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # The row lock orders this against a retry of the resident's key taking the hold again.
            row = await conn.fetchrow(
                """
                SELECT * FROM bff.appointment_holds
                WHERE id = $1 AND in_doubt_at IS NOT NULL AND released_at IS NOT NULL
                  AND upstream_hold_id IS NULL
                FOR UPDATE SKIP LOCKED
                """,
                hold_id,
            )
            if row is None:
                return 0
            verdict = await self.client.void(_hold_request_id(row))
            if verdict.done:
                await self.client.release_hold(msgspec.convert(verdict.body, Hold).hold_id)
            # A retry of the key after this asks the booking system with a new request id: the
            # voided one is answered with what it was (a hold now released) or refused.
            await conn.execute(
                """
                UPDATE bff.appointment_holds SET in_doubt_at = NULL, upstream_attempt = upstream_attempt + 1
                WHERE id = $1
                """,
                hold_id,
            )
            return 1

    async def _resolve_cancel(self, row: asyncpg.Record) -> None:
        request_id = str(row["cancel_request_id"])
        if row["told_failed_at"] is None:
            try:
                await self.client.cancel(request_id, row["booking_no"])
            except BookingRefused:
                await self._uncancel(row["id"])
                return
        else:
            verdict = await self.client.void(request_id)
            if not verdict.done:
                await self._uncancel(row["id"])
                return
        async with self.pool.acquire() as conn, conn.transaction():
            await self._cancelled(conn, row["id"])
        await self._freed(row["slot_id"])

    async def _undo(self, row: asyncpg.Record) -> None:
        """End a pending row failed that the resident was told had failed (see resolve_pending)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The row lock orders this against a retry of the resident's key settling the row.
            still = await conn.fetchval(
                "SELECT 1 FROM bff.appointments WHERE id = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED",
                row["id"],
            )
            if still is None:
                return
            verdict = await self.client.void(str(row["upstream_request_id"]))
            undo_id = str(uuid.uuid5(row["id"], "undo"))
            if verdict.done:
                made = msgspec.convert(verdict.body, Booking)
                if row["rescheduled_from"] is None:
                    try:
                        await self.client.cancel(undo_id, made.booking_no)
                    except BookingRefused:
                        # Too late to undo (the slot has begun): the truth is that it is booked.
                        await conn.execute(
                            "UPDATE bff.appointments SET status = 'booked', booking_no = $2,"
                            " told_failed_at = NULL, updated_at = now() WHERE id = $1",
                            row["id"],
                            made.booking_no,
                        )
                        return
                else:
                    try:
                        back = await self.client.reschedule(undo_id, made.booking_no, row["old_slot_id"])
                    except BookingRefused:
                        # The old time could not be restored: the move stands, and shows.
                        await conn.execute(
                            "UPDATE bff.appointments SET status = 'booked', booking_no = $2,"
                            " told_failed_at = NULL, updated_at = now() WHERE id = $1",
                            row["id"],
                            made.booking_no,
                        )
                        await conn.execute(
                            "UPDATE bff.appointments SET status = 'cancelled', updated_at = now() WHERE id = $1",
                            row["rescheduled_from"],
                        )
                        return
                    await conn.execute(
                        "UPDATE bff.appointments SET booking_no = $2, updated_at = now() WHERE id = $1",
                        row["rescheduled_from"],
                        back.booking_no,
                    )
            await conn.execute(
                "UPDATE bff.appointments SET status = 'failed', updated_at = now() WHERE id = $1",
                row["id"],
            )
        if row["upstream_hold_id"] is not None:
            try:
                await self.client.release_hold(row["upstream_hold_id"])
            except (*IN_DOUBT, BookingRefused):
                pass  # it lapses at its TTL there; ours counts nothing already

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


def _hold_request_id(row: asyncpg.Record) -> str:
    """The request id of a hold's current upstream attempt (the hold's own id until one is voided)."""
    if row["upstream_attempt"] == 0:
        return str(row["id"])
    return str(uuid.uuid5(row["id"], f"hold-attempt-{row['upstream_attempt']}"))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


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
