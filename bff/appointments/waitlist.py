"""The waitlist of a full hall: a freed seat becomes a real hold offered to the first in line.

Fairness across replicas rests on the same row lock as the capacity guarantee: an offer is made
in a transaction that locks the slot's row (`_lock_and_count`), sees a seat free under capacity
and inserts a hold for it, so one freed seat yields one hold here, whichever replica sees it
first. The first in line is picked `FOR UPDATE SKIP LOCKED`, so two offers made at once (two
slots of one item) go to two residents, in the order they joined.

Only then is the booking system asked for that hold (request id = the hold's id): a seat that a
resident outside the waitlist took meanwhile is refused there, the hold here is let go and the
entry keeps its place; no offer is made without a real hold at the booking system. The resident
is told through the outbox in the transaction that records the offer.

Where offers are made: inline after a seat is freed through us (a cancel, a hold let go, a
reschedule's old slot), and by the `appointments_waitlist` job, which also settles offers
(claimed → booked; lapsed or let go → missed, the hold released at the booking system so the
seat passes on) and finds seats freed any other way (an expired hold, a no-show release, a
cancellation at the hall) by asking the booking system for the waited-for days.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta

import asyncpg

from adapters.booking.client import BookingClient, BookingRefused
from adapters.errors import NotSent, ProblemError
from bff.appointments.schemas import WaitlistEntryOut, WaitlistOfferOut, WaitlistPage
from bff.appointments.service import IN_DOUBT, AppointmentService, Conn, iso
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import parse_uuid
from bff.platform.clock import CHINA
from bff.platform.logs import get_logger
from push import outbox
from push.topics import WaitlistOffer

log = get_logger("bff.appointments.waitlist")

ACTIVE = ("waiting", "offering", "offered")
# A range of days waited for: at most the booking calendar's span.
MAX_RANGE_DAYS = 16
DAY_CONCURRENCY = 4
# Candidates looked at per offer: residents whose booking of that day would break a cap are passed over.
CANDIDATES = 20

_ENTRY_SQL = """
    SELECT e.*, h.slot_id, h.expires_at, s.starts_at,
           CASE WHEN e.status = 'waiting' THEN 1 + (
               SELECT count(*) FROM bff.waitlist_entries o
               WHERE o.hall_id = e.hall_id AND o.item_code = e.item_code
                 AND o.status IN ('waiting', 'offering') AND (o.joined_at, o.id) < (e.joined_at, e.id)
                 AND o.date_from <= e.date_to AND o.date_to >= e.date_from) END AS position
    FROM bff.waitlist_entries e
    LEFT JOIN bff.appointment_holds h ON h.id = e.hold_id
    LEFT JOIN bff.slots s ON s.slot_id = h.slot_id
"""


def _refused(message: str, *, status: int, code: str, zh: str, **extra: object) -> ProblemError:
    return ProblemError(message, status=status, code=code, detail_zh=zh, extra=extra or None)


def entry_out(row: asyncpg.Record) -> WaitlistEntryOut:
    offer = None
    if row["status"] == "offered" and row["slot_id"] is not None:
        offer = WaitlistOfferOut(
            hold_id=str(row["hold_id"]),
            slot_id=row["slot_id"],
            starts_at=iso(row["starts_at"]),
            expires_at=iso(row["expires_at"]),
        )
    return WaitlistEntryOut(
        id=str(row["id"]),
        hall_id=row["hall_id"],
        item_code=row["item_code"],
        date_from=row["date_from"].isoformat(),
        date_to=row["date_to"].isoformat(),
        status=row["status"],
        joined_at=iso(row["joined_at"]),
        position=None if row["position"] is None else int(row["position"]),
        offer=offer,
    )


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _refused(
            f"{field}: not a date (YYYY-MM-DD)",
            status=422,
            code="waitlist_range_invalid",
            zh=f"{field}：不是有效日期（YYYY-MM-DD）",
        ) from None


class WaitlistService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        appointments: AppointmentService,
        client: BookingClient,
        *,
        offer_ttl_s: int,
        max_per_person: int,
    ) -> None:
        self.pool = pool
        self.appointments = appointments
        self.client = client
        self.offer_ttl_s = offer_ttl_s
        self.max_per_person = max_per_person

    # --- the resident's side ---

    async def join(
        self, ctx: IdemContext, person_id: str, hall_id: str, item_code: str, first: str, last: str
    ) -> Recorded[WaitlistEntryOut]:
        """Join the line for an item in a hall over a range of days, only when every seat is taken."""
        entry_id = ctx.request_id
        if await self.pool.fetchval("SELECT 1 FROM bff.waitlist_entries WHERE id = $1", entry_id) is None:
            date_from, date_to = _day(first, "dateFrom"), _day(last, "dateTo")
            today = datetime.now(CHINA).date()
            if date_to < date_from or date_from <= today or (date_to - date_from).days >= MAX_RANGE_DAYS:
                raise _refused(
                    f"dateFrom..dateTo: from tomorrow on, at most {MAX_RANGE_DAYS} days, in order",
                    status=422,
                    code="waitlist_range_invalid",
                    zh=f"日期范围须从明天起、按先后顺序、最长{MAX_RANGE_DAYS}天",
                )
            await self._standing(person_id)
            await self._really_full(hall_id, item_code, date_from, date_to)
            async with self.pool.acquire() as conn, conn.transaction():
                await self.appointments._lock_person(conn, person_id)
                row = await conn.fetchrow(
                    """
                    SELECT count(*) AS active,
                           count(*) FILTER (WHERE hall_id = $2 AND item_code = $3
                                            AND date_from <= $5 AND date_to >= $4) AS same
                    FROM bff.waitlist_entries WHERE person_id = $1 AND status = ANY($6::text[])
                    """,
                    person_id,
                    hall_id,
                    item_code,
                    date_from,
                    date_to,
                    list(ACTIVE),
                )
                assert row is not None
                if row["same"] > 0:
                    raise _refused(
                        "you are already waiting for this item in this hall on these days",
                        status=409,
                        code="waitlist_duplicate",
                        zh="您已在该大厅该事项这些日期的排队中",
                    )
                if row["active"] >= self.max_per_person:
                    raise _refused(
                        f"at most {self.max_per_person} waitlist entries at once; leave one first",
                        status=409,
                        code="waitlist_cap_reached",
                        zh=f"同时最多排队 {self.max_per_person} 个，请先退出一个",
                        limit=self.max_per_person,
                    )
                await conn.execute(
                    """
                    INSERT INTO bff.waitlist_entries (id, person_id, hall_id, item_code, date_from, date_to)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING
                    """,
                    entry_id,
                    person_id,
                    hall_id,
                    item_code,
                    date_from,
                    date_to,
                )
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchrow(_ENTRY_SQL + " WHERE e.id = $1", entry_id)
            assert found is not None
            return await ctx.finish(conn, entry_out(found))

    async def _standing(self, person_id: str) -> None:
        # Waiting makes sense only for someone who could book the seat offered.
        await self.appointments._standing_warning(person_id)

    async def _really_full(self, hall_id: str, item_code: str, first: date, last: date) -> None:
        """Refuse to queue while a seat is free: the booking system's own counts, day by day."""
        gate = asyncio.Semaphore(DAY_CONCURRENCY)

        async def one(day: date) -> list[tuple[str, int]]:
            async with gate:
                slots = await self.appointments.day_slots(hall_id, item_code, day)
            now = datetime.now(CHINA)
            return [(s.slot_id, s.available) for s in slots if s.starts_at > now]

        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        found = [slot for day in await asyncio.gather(*(one(d) for d in days)) for slot in day]
        if not found:
            raise _refused(
                "the hall takes no appointments for this item on those days",
                status=422,
                code="waitlist_nothing_open",
                zh="该大厅在这些日期不办理此事项的预约",
            )
        free = next((slot for slot, available in found if available > 0), None)
        if free is not None:
            raise _refused(
                "a seat is free on those days: book it instead of waiting",
                status=409,
                code="seats_available",
                zh="这些日期仍有可预约的号源，请直接预约",
                slotId=free,
            )

    async def mine(self, person_id: str) -> WaitlistPage:
        rows = await self.pool.fetch(
            _ENTRY_SQL + " WHERE e.person_id = $1 AND e.status <> 'left' ORDER BY e.joined_at DESC LIMIT 50",
            person_id,
        )
        return WaitlistPage(items=[entry_out(r) for r in rows])

    async def leave(self, ctx: IdemContext, person_id: str, entry_id: str) -> Recorded[WaitlistEntryOut]:
        """Leave the line; an offer held for the resident is let go (and passes to the next)."""
        ident = parse_uuid(entry_id, "waitlist entry")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM bff.waitlist_entries WHERE id = $1 AND person_id = $2 FOR UPDATE",
                ident,
                person_id,
            )
            if row is None:
                raise _refused(
                    f"no waitlist entry {entry_id[:64]}",
                    status=404,
                    code="waitlist_entry_not_found",
                    zh=f"未找到排队 {entry_id[:64]}",
                )
            if row["status"] not in (*ACTIVE, "left"):
                raise _refused(
                    f"this entry is {row['status']} already",
                    status=409,
                    code="waitlist_not_active",
                    zh="该排队已结束（已预约或机会已过）",
                )
            held = None
            if row["status"] in ("offering", "offered") and row["hold_id"] is not None:
                held = await conn.fetchrow(
                    """
                    UPDATE bff.appointment_holds SET released_at = now()
                    WHERE id = $1 AND consumed_at IS NULL AND released_at IS NULL RETURNING *
                    """,
                    row["hold_id"],
                )
            await conn.execute(
                "UPDATE bff.waitlist_entries SET status = 'left', updated_at = now() WHERE id = $1 AND status <> 'left'",
                ident,
            )
        if held is not None:
            await self._release_upstream(held["upstream_hold_id"])
            await self.seat_freed(held["slot_id"])
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchrow(_ENTRY_SQL + " WHERE e.id = $1", ident)
            assert found is not None
            return await ctx.finish(conn, entry_out(found))

    # --- offers ---

    async def seat_freed(self, slot_id: str) -> int:
        """A seat of this slot may be free: offer it (best effort; the job catches what this misses)."""
        try:
            return await self._offer(slot_id)
        except Exception:  # the caller's change is done; the job makes the offers this misses
            log.warning("waitlist_offer_deferred", slot_id=slot_id, exc_info=True)
            return 0

    async def _offer(self, slot_id: str, most: int = 1_000) -> int:
        made = 0
        while made < most:
            reserved = await self._reserve(slot_id)
            if reserved is None:
                return made
            if not await self._hold_upstream(*reserved):
                return made
            made += 1
        return made

    async def _reserve(self, slot_id: str) -> tuple[asyncpg.Record, uuid.UUID] | None:
        """A seat free here and the first in line who could book it: a hold reserved for them."""
        async with self.pool.acquire() as conn, conn.transaction():
            slot = await conn.fetchrow("SELECT * FROM bff.slots WHERE slot_id = $1", slot_id)
            if slot is None or slot["starts_at"] <= datetime.now(CHINA):
                return None
            capacity, taken = await self.appointments._lock_and_count(conn, slot_id)
            if taken >= capacity:
                return None
            day = slot["starts_at"].astimezone(CHINA).date()
            candidates = await conn.fetch(
                """
                SELECT * FROM bff.waitlist_entries
                WHERE hall_id = $1 AND item_code = $2 AND status = 'waiting' AND $3 BETWEEN date_from AND date_to
                ORDER BY joined_at, id LIMIT $4 FOR UPDATE SKIP LOCKED
                """,
                slot["hall_id"],
                slot["item_code"],
                day,
                CANDIDATES,
            )
            for entry in candidates:
                if not await self._could_book(conn, entry["person_id"], slot):
                    continue
                hold_id = uuid.uuid4()
                await conn.execute(
                    """
                    INSERT INTO bff.appointment_holds (id, person_id, slot_id, expires_at)
                    VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                    """,
                    hold_id,
                    entry["person_id"],
                    slot_id,
                    self.offer_ttl_s,
                )
                await conn.execute(
                    """
                    UPDATE bff.waitlist_entries SET status = 'offering', hold_id = $2, updated_at = now()
                    WHERE id = $1
                    """,
                    entry["id"],
                    hold_id,
                )
                return entry, hold_id
            return None

    async def _could_book(self, conn: Conn, person_id: str, slot: asyncpg.Record) -> bool:
        """Passed over (keeping their place) when the booking would break a cap or they hold this slot."""
        try:
            await self.appointments._check_caps(conn, person_id, slot["starts_at"])
        except ProblemError:
            return False
        same = await conn.fetchval(
            """
            SELECT 1 FROM bff.appointment_holds WHERE person_id = $1 AND slot_id = $2
              AND consumed_at IS NULL AND released_at IS NULL AND expires_at > now()
            """,
            person_id,
            slot["slot_id"],
        )
        return same is None

    async def _hold_upstream(self, entry: asyncpg.Record, hold_id: uuid.UUID) -> bool:
        """The booking system's hold for a reserved offer; without it there is no offer."""
        row = await self.pool.fetchrow("SELECT * FROM bff.appointment_holds WHERE id = $1", hold_id)
        assert row is not None
        try:
            held = await self.client.hold(str(hold_id), row["slot_id"], entry["person_id"], self.offer_ttl_s)
        except (BookingRefused, *IN_DOUBT) as exc:
            # Taken by someone outside the line (or not known): no offer, the entry keeps its place.
            # A hold the booking system may have made is voided there by the resolver.
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """
                    UPDATE bff.appointment_holds SET released_at = now(),
                           in_doubt_at = CASE WHEN $2 THEN now() ELSE in_doubt_at END
                    WHERE id = $1 AND consumed_at IS NULL
                    """,
                    hold_id,
                    isinstance(exc, IN_DOUBT) and not isinstance(exc, NotSent),
                )
                await conn.execute(
                    """
                    UPDATE bff.waitlist_entries SET status = 'waiting', hold_id = NULL, updated_at = now()
                    WHERE id = $1 AND status = 'offering'
                    """,
                    entry["id"],
                )
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            hold = await conn.fetchrow(
                """
                UPDATE bff.appointment_holds SET upstream_hold_id = $2
                WHERE id = $1 AND released_at IS NULL RETURNING *
                """,
                hold_id,
                held.hold_id,
            )
            offered = await conn.fetchrow(
                """
                UPDATE bff.waitlist_entries SET status = 'offered', offered_at = now(), updated_at = now()
                WHERE id = $1 AND status = 'offering' AND hold_id = $2 RETURNING *
                """,
                entry["id"],
                hold_id,
            )
            if hold is not None and offered is not None:
                slot = await conn.fetchrow("SELECT * FROM bff.slots WHERE slot_id = $1", hold["slot_id"])
                assert slot is not None
                await outbox.enqueue(
                    conn,
                    "appointment.waitlist_offer",
                    entry["person_id"],
                    f"waitlist-offer:{hold_id}",
                    WaitlistOffer(
                        entry_id=str(entry["id"]),
                        hold_id=str(hold_id),
                        slot_id=hold["slot_id"],
                        item_code=slot["item_code"],
                        hall_id=slot["hall_id"],
                        starts_at=iso(slot["starts_at"]),
                        expires_at=iso(hold["expires_at"]),
                    ),
                )
                return True
        # The resident left meanwhile: the seat is not theirs to keep.
        await self._release_upstream(held.hold_id)
        await self.pool.execute(
            "UPDATE bff.appointment_holds SET released_at = coalesce(released_at, now()) WHERE id = $1",
            hold_id,
        )
        return True

    async def _release_upstream(self, upstream_hold_id: str | None) -> None:
        if upstream_hold_id is None:
            return
        try:
            await self.client.release_hold(upstream_hold_id)
        except (*IN_DOUBT, BookingRefused):
            pass  # it lapses at its TTL there; ours counts nothing already

    # --- the job ---

    async def run(self, days_limit: int = 100) -> int:
        """Settle offers, then offer every seat the booking system shows free on a waited-for day."""
        done = await self.settle()
        wanted = await self.pool.fetch(
            """
            SELECT DISTINCT e.hall_id, e.item_code, d::date AS day
            FROM bff.waitlist_entries e,
                 generate_series(greatest(e.date_from, (now() AT TIME ZONE 'Asia/Shanghai')::date),
                                 e.date_to, interval '1 day') d
            WHERE e.status = 'waiting'
            ORDER BY day LIMIT $1
            """,
            days_limit,
        )
        for want in wanted:
            try:
                slots = await self.appointments.day_slots(want["hall_id"], want["item_code"], want["day"])
            except ProblemError:
                continue  # out of the window, or the booking system not answering: next round
            for slot in slots:
                if slot.available > 0 and slot.starts_at > datetime.now(CHINA):
                    done += await self._offer(slot.slot_id, most=slot.available)
        return done

    async def settle(self) -> int:
        """Claimed offers end booked; lapsed or let-go ones end missed and their seats pass on."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(
                """
                UPDATE bff.waitlist_entries e
                   SET status = CASE WHEN a.status = 'failed' THEN 'missed' ELSE 'booked' END,
                       updated_at = now()
                FROM bff.appointment_holds h JOIN bff.appointments a
                     ON a.person_id = h.person_id AND a.slot_id = h.slot_id AND a.created_at = h.consumed_at
                WHERE e.status = 'offered' AND h.id = e.hold_id AND h.consumed_at IS NOT NULL
                  AND a.status <> 'pending'
                RETURNING e.id
                """
            )
            lapsed = await conn.fetch(
                """
                UPDATE bff.appointment_holds h SET released_at = coalesce(h.released_at, now())
                FROM bff.waitlist_entries e
                WHERE e.hold_id = h.id AND e.status IN ('offered', 'offering') AND h.consumed_at IS NULL
                  AND (h.expires_at <= now() OR h.released_at IS NOT NULL)
                RETURNING h.id, h.slot_id, h.upstream_hold_id, e.id AS entry_id, e.status AS entry_status
                """
            )
            for row in lapsed:
                # An offer never confirmed upstream (the process died) loses nobody their place.
                await conn.execute(
                    """
                    UPDATE bff.waitlist_entries
                       SET status = CASE WHEN status = 'offering' THEN 'waiting' ELSE 'missed' END,
                           hold_id = CASE WHEN status = 'offering' THEN NULL ELSE hold_id END,
                           updated_at = now()
                    WHERE id = $1
                    """,
                    row["entry_id"],
                )
                if row["entry_status"] == "offering":
                    await conn.execute(
                        "UPDATE bff.appointment_holds SET in_doubt_at = now() WHERE id = $1 AND upstream_hold_id IS NULL",
                        row["id"],
                    )
            ended = await conn.fetch(
                """
                UPDATE bff.waitlist_entries SET status = 'missed', updated_at = now()
                WHERE status = 'waiting' AND date_to < (now() AT TIME ZONE 'Asia/Shanghai')::date
                RETURNING id
                """
            )
        for row in lapsed:
            await self._release_upstream(row["upstream_hold_id"])
        for slot_id in {row["slot_id"] for row in lapsed}:
            await self.seat_freed(slot_id)
        return len(claimed) + len(lapsed) + len(ended)
