"""The journey's clean-up jobs, driven through their run functions against the real PostgreSQL,
Redis and the sandbox over HTTP.

- `idempotency_expire` (`run_expire_keys`) drops only records past their keep time; a kept key
  still replays afterwards.
- `appointments_resolve_pending` settles bookings left `pending` because the booking system's
  answer never reached us. One the resident was answered 503 for ends FAILED: the resolver voids
  the request upstream and undoes what the booking system did (a write answered "failed" never takes
  effect behind the resident's back), unless a retry of the key learnt first that it went through.
  One nobody was answered about (the process died, see tests/test_appointment_intents.py) is asked
  again with the same request id and completed as the resident asked.

How a booking becomes pending: the BFF inserts the `pending` row, then calls `POST /bookings`; if
that call ends without an answer (UpstreamUnavailable) the row stays pending and holds its seat.
The sandbox's fault middleware cannot produce that state: it decides a fault *before* the booking
routes run (so in every fault mode the booking system never records anything), and it applies to
every `/booking/*` call, so the standing check that comes before the insert fails first. Hence
`AnswerLoss` below: a TCP hop between the BFF and the sandbox that either forwards a request,
waits for the booking system's full answer (its transaction has committed by then) and then cuts
the connection instead of passing the answer on ("it booked, we did not hear"), or cuts the
connection before the booking system ever sees the request ("it never heard").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from adapters import context
from bff.platform.db import create_pool
from bff.platform.settings import Settings
from tests.auth_helpers import login_resident
from tests.conftest import make_settings
from tests.test_journey_helpers import auth, bookable_item, key, open_days, upstream_urls

_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


def _length(head: bytes) -> int:
    found = _LENGTH.search(head)
    return int(found.group(1)) if found else 0


class AnswerLoss:
    """A TCP hop in front of the sandbox that can lose one route's answers (or its requests)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 80
        self.lose: dict[tuple[str, str], str] = {}  # (method, path) -> "answer" | "request" | "kill"
        # Mode "kill": called once the upstream has answered (committed), before the answer is
        # passed on: a `kill -9` of the BFF at exactly that moment.
        self.on_answer: Any = None
        self.seen: list[tuple[str, str, str]] = []  # (method, path, "passed" | "answer lost" | ...)
        self.url = ""
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def count(self, method: str, path: str, outcome: str | None = None) -> int:
        return sum(1 for m, p, o in self.seen if (m, p) == (method, path) and outcome in (None, o))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # one request at a time on a kept-alive connection
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_length(head))
                method, target = head.split(b" ", 2)[:2]
                route = (method.decode(), target.split(b"?", 1)[0].decode())
                mode = self.lose.get(route)
                if mode == "request":
                    self.seen.append((*route, "request lost"))
                    writer.transport.abort()
                    return
                up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
                try:
                    up_writer.write(head + body)
                    await up_writer.drain()
                    answer_head = await up_reader.readuntil(b"\r\n\r\n")
                    answer_body = await up_reader.readexactly(_length(answer_head))
                finally:
                    up_writer.close()
                    with contextlib.suppress(Exception):
                        await up_writer.wait_closed()
                if mode == "kill" and self.on_answer is not None:
                    self.on_answer()
                    self.seen.append((*route, "killed"))
                    writer.transport.abort()
                    return
                if mode == "answer":
                    # The booking system has answered (and committed); we never hear it.
                    self.seen.append((*route, "answer lost"))
                    writer.transport.abort()
                    return
                self.seen.append((*route, "passed"))
                writer.write(answer_head + answer_body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


BOOKINGS = ("POST", "/booking/bookings")


@pytest.fixture
async def hop(sandbox_url: str) -> AsyncIterator[AnswerLoss]:
    proxy = AnswerLoss(sandbox_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _overrides(sandbox_url: str, hop: AnswerLoss) -> dict[str, Any]:
    return {**upstream_urls(sandbox_url), "booking_url": f"{hop.url}/booking"}


@pytest.fixture
async def client(make_client, sandbox_url: str, hop: AnswerLoss) -> httpx.AsyncClient:
    return await make_client(**_overrides(sandbox_url, hop))


@pytest.fixture
def job_settings(services, sandbox_url: str, hop: AnswerLoss) -> Settings:
    return make_settings(services, sandbox_url, **_overrides(sandbox_url, hop))


@pytest.fixture
async def pool(job_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    made = await create_pool(job_settings)
    try:
        yield made
    finally:
        await made.close()


async def run_job(name: str, pool: asyncpg.Pool, redis: Any, settings: Settings) -> None:
    """Run one listed job once, the way the leader worker does: from the composition root, inside
    the job's budget."""
    from bff.wiring import open_root

    async with open_root(settings) as root:
        jobs = {job.name: job for job in root.jobs}
        # The jobs are the root's services' own methods: the same upstreams and breakers as the API's.
        assert jobs["appointments_resolve_pending"].run == root.appointments.resolve_pending
        assert jobs["idempotency_expire"].run == root.idempotency.expire
        job = jobs[name]
        with context.budget(job.budget):
            await job.run()


async def appointment_of(db: asyncpg.Connection, person_id: str) -> asyncpg.Record:
    rows = await db.fetch("SELECT * FROM bff.appointments WHERE person_id = $1", person_id)
    assert len(rows) == 1, rows
    return rows[0]


async def upstream_bookings(sandbox: httpx.AsyncClient, slot: str, person_id: str) -> list[dict[str, Any]]:
    response = await sandbox.get(f"/booking/_control/slots/{slot}/bookings")
    assert response.status_code == 200, response.text
    return [b for b in response.json()["bookings"] if b["person_ref"] == person_id]


async def upstream_available(sandbox: httpx.AsyncClient, slot: str) -> int:
    response = await sandbox.get(f"/booking/slots/{slot}")
    assert response.status_code == 200, response.text
    return int(response.json()["available"])


async def local_taken(db: asyncpg.Connection, slot: str) -> int:
    """Seats our database counts as taken (the figure the capacity guarantee locks on)."""
    return int(
        await db.fetchval(
            """
            SELECT (SELECT count(*) FROM bff.appointments
                     WHERE slot_id = $1 AND status IN ('pending', 'booked', 'checked_in', 'cancelling'))
                 + (SELECT count(*) FROM bff.appointment_holds
                     WHERE slot_id = $1 AND consumed_at IS NULL AND released_at IS NULL AND expires_at > now())
            """,
            slot,
        )
    )


async def never_answered(db: asyncpg.Connection, person_id: str) -> None:
    """As if the process had died before answering the resident (no 503 was ever told); the real
    `kill -9` at that moment is in tests/test_appointment_intents.py."""
    await db.execute(
        "UPDATE bff.appointments SET told_failed_at = NULL WHERE person_id = $1 AND status = 'pending'",
        person_id,
    )


VOID = "/booking/requests/{}/void"


def void_route(request_id: Any) -> tuple[str, str]:
    return ("POST", VOID.format(request_id))


async def make_old(db: asyncpg.Connection, person_id: str) -> None:
    """Two minutes pass for this resident's bookings and holds: the resolver leaves younger pending
    bookings alone (they may still be in flight)."""
    two = timedelta(minutes=2)
    await db.execute(
        """
        UPDATE bff.appointments SET created_at = created_at - $2::interval, updated_at = updated_at - $2::interval
        WHERE person_id = $1
        """,
        person_id,
        two,
    )
    await db.execute(
        """
        UPDATE bff.appointment_holds
           SET created_at = created_at - $2::interval, expires_at = expires_at - $2::interval,
               consumed_at = consumed_at - $2::interval, released_at = released_at - $2::interval
         WHERE person_id = $1
        """,
        person_id,
        two,
    )


# --- idempotency_expire ---


async def test_expire_keys_drops_only_records_past_their_keep_time(
    client, sandbox, db, redis, pool, job_settings
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][5]["slotId"]
    kept_key = key()
    first = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, kept_key))
    assert first.status_code == 201, first.text
    # The real record is 30 h old and still within its keep time (>= 24 h, here 48 h).
    await db.execute(
        """
        UPDATE bff.idempotency_keys
           SET created_at = now() - interval '30 hours', completed_at = now() - interval '30 hours',
               expires_at = now() + interval '18 hours'
         WHERE subject = $1 AND key = $2 AND state = 'done'
        """,
        who["person_id"],
        kept_key,
    )
    subject = f"expire-test-{uuid.uuid4().hex[:8]}"
    hour, minute, second = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
    rows = {
        # name: (age, keep time left, state)
        "expired_an_hour_ago": (49 * hour, -hour, "done"),
        "expired_a_second_ago": (48 * hour, -second, "done"),
        "expired_in_flight": (49 * hour, -minute, "in_flight"),
        "expires_in_a_minute": (48 * hour - minute, minute, "done"),
        "a_day_and_a_bit_old": (25 * hour, 23 * hour, "done"),
        "an_hour_old": (hour, 47 * hour, "done"),
        "just_made": (timedelta(0), 48 * hour, "done"),
        "in_flight_now": (timedelta(0), 48 * hour, "in_flight"),
    }
    for name, (age, left, state) in rows.items():
        await db.execute(
            """
            INSERT INTO bff.idempotency_keys
                (subject, key, fingerprint, state, lease_until, response_status, response_media_type,
                 response_body, created_at, completed_at, expires_at)
            VALUES ($1, $2, '\\x00'::bytea, $3, now() - $4::interval + interval '30 seconds',
                    CASE WHEN $3 = 'done' THEN 201 END, CASE WHEN $3 = 'done' THEN 'application/json' END,
                    CASE WHEN $3 = 'done' THEN '{}'::bytea END,
                    now() - $4::interval, CASE WHEN $3 = 'done' THEN now() - $4::interval END,
                    now() + $5::interval)
            """,
            subject,
            name,
            state,
            age,
            left,
        )
    total_before = await db.fetchval("SELECT count(*) FROM bff.idempotency_keys")

    await run_job("idempotency_expire", pool, redis, job_settings)

    left_keys = {
        r["key"] for r in await db.fetch("SELECT key FROM bff.idempotency_keys WHERE subject = $1", subject)
    }
    assert left_keys == {
        "expires_in_a_minute",
        "a_day_and_a_bit_old",
        "an_hour_old",
        "just_made",
        "in_flight_now",
    }
    assert await db.fetchval("SELECT count(*) FROM bff.idempotency_keys") == total_before - 3
    assert await db.fetchval("SELECT count(*) FROM bff.idempotency_keys WHERE expires_at < now()") == 0
    # Nothing kept was touched: no record younger than a day is gone, and the kept key replays.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.idempotency_keys WHERE subject = $1 AND key = $2",
            who["person_id"],
            kept_key,
        )
        == 1
    )
    replay = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, kept_key))
    assert replay.status_code == 201, replay.text
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.content == first.content
    assert len(await upstream_bookings(sandbox, slot, who["person_id"])) == 1

    # A second run has nothing left to do.
    await run_job("idempotency_expire", pool, redis, job_settings)
    assert await db.fetchval("SELECT count(*) FROM bff.idempotency_keys") == total_before - 3


# --- appointments_resolve_pending ---


async def test_resolve_pending_undoes_a_booking_the_resident_was_told_had_failed(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][3]["slotId"]
    available, taken = await upstream_available(sandbox, slot), await local_taken(db, slot)

    # The booking system books, commits and answers; the answer never reaches the BFF.
    hop.lose[BOOKINGS] = "answer"
    idem = key()
    lost = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert lost.status_code == 503, lost.text
    assert lost.json()["code"] == "upstream_unavailable"
    assert hop.count(*BOOKINGS) == hop.count(*BOOKINGS, "answer lost") >= 1
    upstream = await upstream_bookings(sandbox, slot, who["person_id"])
    assert [b["status"] for b in upstream] == ["booked"]  # it did book (once, however often asked)
    row = await appointment_of(db, who["person_id"])
    assert (row["status"], row["booking_no"]) == ("pending", None)  # and we did not hear
    assert await local_taken(db, slot) == taken + 1  # the pending row keeps the seat meanwhile
    del hop.lose[BOOKINGS]

    # A pending booking younger than a minute may still be in flight: the resolver leaves it.
    asked = hop.count(*BOOKINGS)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await appointment_of(db, who["person_id"]))["status"] == "pending"
    assert hop.count(*BOOKINGS) == asked

    assert row["told_failed_at"] is not None  # the resident was answered 503

    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    resolved = await appointment_of(db, who["person_id"])
    # The resident was told it failed, and it ends failed: the booking system's booking is undone.
    assert resolved["status"] == "failed"
    assert hop.count(*BOOKINGS) == asked  # not booked again
    assert hop.count(*void_route(row["upstream_request_id"])) == 1
    assert [b["status"] for b in await upstream_bookings(sandbox, slot, who["person_id"])] == ["cancelled"]
    assert await upstream_available(sandbox, slot) == available
    assert await local_taken(db, slot) == taken

    # A second run changes nothing and asks nobody.
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert await appointment_of(db, who["person_id"]) == resolved
    assert hop.count(*void_route(row["upstream_request_id"])) == 1
    assert await upstream_available(sandbox, slot) == available

    # The list does not show it; a retry of the key is told what really happened, and keeps saying it.
    listed = (await client.get("/api/v1/appointments", headers=auth(who))).json()["items"]
    assert str(row["id"]) not in [a["id"] for a in listed]
    retry = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert retry.status_code == 409 and retry.json()["code"] == "attempt_voided", retry.text
    again = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert again.content == retry.content and again.headers.get("idempotent-replayed") == "true"
    assert hop.count(*BOOKINGS) == asked
    # A new attempt books normally.
    fresh = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, key()))
    assert fresh.status_code == 201 and fresh.json()["status"] == "booked", fresh.text


async def test_a_retry_of_the_key_learns_that_a_booking_went_through(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    """Told 503, the resident retries the same key: the booking system's answer to that request id
    is learnt, the resident is told it went through, and the resolver then leaves it alone."""
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][5]["slotId"]
    available = await upstream_available(sandbox, slot)
    hop.lose[BOOKINGS] = "answer"
    idem = key()
    lost = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert lost.status_code == 503, lost.text
    assert lost.headers.get("retry-after")
    del hop.lose[BOOKINGS]
    retry = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert retry.status_code == 201 and retry.json()["status"] == "booked", retry.text
    upstream = await upstream_bookings(sandbox, slot, who["person_id"])
    assert [(b["booking_no"], b["status"]) for b in upstream] == [(retry.json()["bookingNo"], "booked")]
    row = await appointment_of(db, who["person_id"])
    assert (row["status"], row["told_failed_at"]) == ("booked", None)
    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await appointment_of(db, who["person_id"]))["status"] == "booked"
    assert hop.count(*void_route(row["upstream_request_id"])) == 0
    assert await upstream_available(sandbox, slot) == available - 1


async def test_resolve_pending_voids_a_held_booking_the_upstream_never_heard_of(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][4]["slotId"]
    available, taken = await upstream_available(sandbox, slot), await local_taken(db, slot)
    held = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, key()))
    assert held.status_code == 201, held.text
    assert await upstream_available(sandbox, slot) == available - 1

    # This time the request itself is lost: the booking system never hears of the booking.
    hop.lose[BOOKINGS] = "request"
    lost = await client.post(
        "/api/v1/appointments", json={"holdId": held.json()["holdId"]}, headers=auth(who, key())
    )
    assert lost.status_code == 503, lost.text
    assert hop.count(*BOOKINGS, "request lost") >= 1
    del hop.lose[BOOKINGS]
    assert await upstream_bookings(sandbox, slot, who["person_id"]) == []
    row = await appointment_of(db, who["person_id"])
    assert row["status"] == "pending"
    assert await local_taken(db, slot) == taken + 1  # the hold is used up, the pending row counts

    await make_old(db, who["person_id"])
    asked = hop.count(*BOOKINGS)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    resolved = await appointment_of(db, who["person_id"])
    assert resolved["status"] == "failed"
    assert hop.count(*BOOKINGS) == asked
    assert await upstream_bookings(sandbox, slot, who["person_id"]) == []
    # The upstream hold is let go too: the seat is free there and here.
    assert await upstream_available(sandbox, slot) == available
    assert await local_taken(db, slot) == taken
    # Should the lost request arrive now, the booking system refuses it: it was voided.
    late = await sandbox.post(
        "/booking/bookings",
        json={"request_id": str(row["upstream_request_id"]), "slot_id": slot, "person_ref": who["person_id"]},
    )
    assert late.status_code == 409 and late.json()["error"] == "request_voided", late.text
    assert await upstream_bookings(sandbox, slot, who["person_id"]) == []

    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert await appointment_of(db, who["person_id"]) == resolved
    assert hop.count(*void_route(row["upstream_request_id"])) == 1


async def test_resolve_pending_frees_the_seat_when_the_upstream_refuses(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slots = (await open_days(client, who, item))[0]["slots"]
    slot, other = slots[6]["slotId"], slots[7]["slotId"]
    available, taken = await upstream_available(sandbox, slot), await local_taken(db, slot)
    hop.lose[BOOKINGS] = "request"
    lost = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, key()))
    assert lost.status_code == 503, lost.text
    del hop.lose[BOOKINGS]
    row = await appointment_of(db, who["person_id"])
    assert row["status"] == "pending"
    # Meanwhile the resident booked another slot that day at the hall's counter (one a day).
    counter = await sandbox.post(
        "/booking/bookings",
        json={"request_id": str(uuid.uuid4()), "slot_id": other, "person_ref": who["person_id"]},
    )
    assert counter.status_code == 201, counter.text

    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    refused = await appointment_of(db, who["person_id"])
    assert refused["status"] == "failed"  # the seat is not held forever (told 503: voided)
    assert await local_taken(db, slot) == taken
    assert await upstream_bookings(sandbox, slot, who["person_id"]) == []
    assert await upstream_available(sandbox, slot) == available

    asked = hop.count(*BOOKINGS)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert await appointment_of(db, who["person_id"]) == refused
    assert hop.count(*BOOKINGS) == asked
    # The counter booking is the only one.
    assert await book_count(sandbox, other, who["person_id"]) == 1


async def book_count(sandbox: httpx.AsyncClient, slot: str, person_id: str) -> int:
    return len(await upstream_bookings(sandbox, slot, person_id))


async def test_resolve_pending_uses_the_hold_this_booking_consumed(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    """An earlier, cancelled booking of the same slot consumed a hold too: the resolver must hand
    the booking system the hold of *this* booking, or the seat is counted twice upstream."""
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][8]["slotId"]
    available = await upstream_available(sandbox, slot)
    first_hold = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, key())
    )
    assert first_hold.status_code == 201, first_hold.text
    first = await client.post(
        "/api/v1/appointments", json={"holdId": first_hold.json()["holdId"]}, headers=auth(who, key())
    )
    assert first.status_code == 201, first.text
    cancelled = await client.post(
        f"/api/v1/appointments/{first.json()['id']}/cancel", headers=auth(who, key())
    )
    assert cancelled.status_code == 200, cancelled.text
    assert await upstream_available(sandbox, slot) == available

    second_hold = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, key())
    )
    assert second_hold.status_code == 201, second_hold.text
    hop.lose[BOOKINGS] = "request"
    lost = await client.post(
        "/api/v1/appointments", json={"holdId": second_hold.json()["holdId"]}, headers=auth(who, key())
    )
    assert lost.status_code == 503, lost.text
    del hop.lose[BOOKINGS]
    pending = await db.fetchrow(
        "SELECT * FROM bff.appointments WHERE person_id = $1 AND status = 'pending'", who["person_id"]
    )
    assert pending is not None
    taken = await local_taken(db, slot)
    await never_answered(db, who["person_id"])  # so the resolver completes it, with the right hold

    await make_old(db, who["person_id"])
    asked = hop.count(*BOOKINGS)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    resolved = await db.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", pending["id"])
    assert resolved["status"] == "booked"
    assert hop.count(*BOOKINGS) == asked + 1  # asked once, not once per hold of that slot
    live = [b for b in await upstream_bookings(sandbox, slot, who["person_id"]) if b["status"] == "booked"]
    assert [b["booking_no"] for b in live] == [resolved["booking_no"]]
    # The second hold became the booking: one seat upstream, as here.
    assert await upstream_available(sandbox, slot) == available - 1
    assert await local_taken(db, slot) == taken


# --- appointments_resolve_pending: reschedules ---


def reschedule_route(booking_no: str) -> tuple[str, str]:
    return ("POST", f"/booking/bookings/{booking_no}/reschedule")


async def rows_of(db: asyncpg.Connection, *ids: Any) -> list[asyncpg.Record]:
    return [await db.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", uuid.UUID(str(i))) for i in ids]


async def test_resolve_pending_moves_back_a_reschedule_the_resident_was_told_had_failed(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    old_slot, new_slot = days[0]["slots"][2]["slotId"], days[1]["slots"][2]["slotId"]
    old_available, old_taken = await upstream_available(sandbox, old_slot), await local_taken(db, old_slot)
    new_available, new_taken = await upstream_available(sandbox, new_slot), await local_taken(db, new_slot)
    first = await client.post("/api/v1/appointments", json={"slotId": old_slot}, headers=auth(who, key()))
    assert first.status_code == 201, first.text
    old = first.json()
    route = reschedule_route(old["bookingNo"])

    # The booking system moves the booking, commits and answers; the answer never reaches the BFF.
    hop.lose[route] = "answer"
    idem = key()
    path = f"/api/v1/appointments/{old['id']}/reschedule"
    lost = await client.post(path, json={"slotId": new_slot}, headers=auth(who, idem))
    assert lost.status_code == 503, lost.text
    assert lost.json()["code"] == "upstream_unavailable"
    assert hop.count(*route) == hop.count(*route, "answer lost") >= 1
    del hop.lose[route]
    upstream_new = await upstream_bookings(sandbox, new_slot, who["person_id"])
    assert [b["status"] for b in upstream_new] == ["booked"]  # it did move (once, however often asked)
    assert [b["status"] for b in await upstream_bookings(sandbox, old_slot, who["person_id"])] == [
        "cancelled"
    ]
    new_row = await db.fetchrow(
        "SELECT * FROM bff.appointments WHERE rescheduled_from = $1", uuid.UUID(old["id"])
    )
    assert new_row is not None
    assert (new_row["status"], new_row["booking_no"]) == ("pending", None)  # and we did not hear
    assert (await rows_of(db, old["id"]))[0]["status"] == "booked"
    assert await local_taken(db, new_slot) == new_taken + 1  # the pending row keeps the seat meanwhile

    # Younger than a minute: maybe still in flight, left alone.
    asked = hop.count(*route)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await rows_of(db, new_row["id"]))[0]["status"] == "pending"
    assert hop.count(*route) == asked

    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    old_now, new_now = await rows_of(db, old["id"], new_row["id"])
    # Told 503, it ends failed: the booking system's move is moved back, the old time stands.
    assert hop.count(*void_route(new_row["upstream_request_id"])) == 1
    assert new_now["status"] == "failed"
    assert old_now["status"] == "booked"
    assert [b["status"] for b in await upstream_bookings(sandbox, new_slot, who["person_id"])] == [
        "cancelled"
    ]
    upstream_old = await upstream_bookings(sandbox, old_slot, who["person_id"])
    live_old = [b for b in upstream_old if b["status"] == "booked"]
    assert [b["booking_no"] for b in live_old] == [old_now["booking_no"]]  # ours follows the booking system
    assert await upstream_available(sandbox, new_slot) == new_available
    assert await upstream_available(sandbox, old_slot) == old_available - 1
    assert await local_taken(db, new_slot) == new_taken
    assert await local_taken(db, old_slot) == old_taken + 1

    # A second run changes nothing and asks nobody.
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert await rows_of(db, old["id"], new_row["id"]) == [old_now, new_now]
    assert hop.count(*void_route(new_row["upstream_request_id"])) == 1
    assert hop.count(*route) == asked

    # The resident sees the old time; a retry of the key is told that attempt did not go through.
    seen_old = (await client.get(f"/api/v1/appointments/{old['id']}", headers=auth(who))).json()
    assert (seen_old["status"], seen_old["bookingNo"]) == ("booked", old_now["booking_no"])
    retry = await client.post(path, json={"slotId": new_slot}, headers=auth(who, idem))
    assert retry.status_code == 409 and retry.json()["code"] == "attempt_voided", retry.text
    # The moved-back booking can still be moved, cancelled, checked in: it is a plain booking.
    moved = await client.post(
        f"/api/v1/appointments/{old['id']}/reschedule", json={"slotId": new_slot}, headers=auth(who, key())
    )
    assert moved.status_code == 201 and moved.json()["status"] == "booked", moved.text


async def test_resolve_pending_keeps_the_old_booking_when_a_reschedule_is_refused(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    old_slot = days[0]["slots"][1]["slotId"]
    new_slot, other = days[1]["slots"][1]["slotId"], days[1]["slots"][3]["slotId"]
    old_available, old_taken = await upstream_available(sandbox, old_slot), await local_taken(db, old_slot)
    new_available, new_taken = await upstream_available(sandbox, new_slot), await local_taken(db, new_slot)
    first = await client.post("/api/v1/appointments", json={"slotId": old_slot}, headers=auth(who, key()))
    assert first.status_code == 201, first.text
    old = first.json()
    route = reschedule_route(old["bookingNo"])

    # The booking system never hears of the move.
    hop.lose[route] = "request"
    lost = await client.post(
        f"/api/v1/appointments/{old['id']}/reschedule", json={"slotId": new_slot}, headers=auth(who, key())
    )
    assert lost.status_code == 503, lost.text
    assert hop.count(*route, "request lost") >= 1
    del hop.lose[route]
    new_row = await db.fetchrow(
        "SELECT * FROM bff.appointments WHERE rescheduled_from = $1", uuid.UUID(old["id"])
    )
    assert new_row is not None and new_row["status"] == "pending"
    assert await upstream_bookings(sandbox, new_slot, who["person_id"]) == []
    # Meanwhile the resident booked another slot of the new day at the hall's counter (one a day).
    counter = await sandbox.post(
        "/booking/bookings",
        json={"request_id": str(uuid.uuid4()), "slot_id": other, "person_ref": who["person_id"]},
    )
    assert counter.status_code == 201, counter.text

    await make_old(db, who["person_id"])
    asked = hop.count(*route)
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    old_now, new_now = await rows_of(db, old["id"], new_row["id"])
    assert hop.count(*route) == asked  # told 503: voided, not sent again
    assert hop.count(*void_route(new_row["upstream_request_id"])) == 1
    assert (new_now["status"], new_now["booking_no"]) == ("failed", None)  # its seat is free again
    assert (old_now["status"], old_now["booking_no"]) == ("booked", old["bookingNo"])  # intact
    assert await local_taken(db, new_slot) == new_taken
    assert await local_taken(db, old_slot) == old_taken + 1
    assert await upstream_bookings(sandbox, new_slot, who["person_id"]) == []
    assert await upstream_available(sandbox, new_slot) == new_available
    upstream_old = await upstream_bookings(sandbox, old_slot, who["person_id"])
    assert upstream_old == [
        {"booking_no": old["bookingNo"], "status": "booked", "person_ref": who["person_id"]}
    ]
    assert await upstream_available(sandbox, old_slot) == old_available - 1

    # A second run changes nothing and asks nobody.
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert await rows_of(db, old["id"], new_row["id"]) == [old_now, new_now]
    assert hop.count(*route) == asked
    assert await upstream_bookings(sandbox, old_slot, who["person_id"]) == upstream_old

    seen_old = (await client.get(f"/api/v1/appointments/{old['id']}", headers=auth(who))).json()
    assert (seen_old["status"], seen_old["bookingNo"]) == ("booked", old["bookingNo"])
    seen_new = (await client.get(f"/api/v1/appointments/{new_row['id']}", headers=auth(who))).json()
    assert seen_new["status"] == "failed"
