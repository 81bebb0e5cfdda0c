"""The waitlist of a full hall (issue 16 §3): a freed seat is a real hold for the first in line.

Two app instances on one database and one booking system stand for two replicas. The slot under
test is made the only open one of its day (the others get capacity 0 at the booking system), so
the day is really full once its seats are booked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_journey_helpers import auth, book, bookable_item, key, open_days, upstream_urls
from tests.test_worker_jobs import local_taken, upstream_available

CAPACITY = 5
WAITERS = 50
OFFER_TTL_S = 4


def _settings(sandbox_url: str, **extra: Any) -> dict[str, Any]:
    return {**upstream_urls(sandbox_url), "waitlist_offer_ttl_s": OFFER_TTL_S, **extra}


async def _set_capacity(sandbox: httpx.AsyncClient, capacities: dict[str, int]) -> None:
    for slot, capacity in capacities.items():
        response = await sandbox.put(f"/booking/_control/slots/{slot}", json={"capacity": capacity})
        assert response.status_code == 200, response.text


async def _a_full_day(
    client: httpx.AsyncClient,
    who: dict,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    *,
    index: int,
    seats: int,
    item: dict[str, str] | None = None,
) -> tuple[dict[str, str], str, str, list[str]]:
    """(item, date, the one open slot, every slot of that day): only that slot takes `seats`."""
    item = item or await bookable_item(db)
    day = (await open_days(client, who, item, index + 1))[index]
    slots = [s["slotId"] for s in day["slots"]]
    target = slots[-1]
    await _set_capacity(sandbox, {s: (seats if s == target else 0) for s in slots})
    # Our copy of the slots learns the capacities from the slots view.
    view = await client.get(
        f"/api/v1/halls/{item['hall']}/slots",
        params={"item": item["code"], "date": day["date"]},
        headers=auth(who),
    )
    assert view.status_code == 200, view.text
    return item, day["date"], target, slots


def _join_body(item: dict[str, str], first: str, last: str | None = None) -> dict[str, str]:
    return {"hallId": item["hall"], "itemCode": item["code"], "dateFrom": first, "dateTo": last or first}


async def join(
    client: httpx.AsyncClient, who: dict, body: dict[str, str], idem: str | None = None
) -> httpx.Response:
    return await client.post("/api/v1/appointments/waitlist", json=body, headers=auth(who, idem or key()))


async def mine(client: httpx.AsyncClient, who: dict) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/appointments/waitlist", headers=auth(who))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def statuses(db: asyncpg.Connection, entries: list[str]) -> list[str]:
    rows = await db.fetch(
        "SELECT id::text, status FROM bff.waitlist_entries WHERE id = ANY($1::uuid[])", entries
    )
    by_id = {r["id"]: r["status"] for r in rows}
    return [by_id[e] for e in entries]


async def upstream_live_holds(db: asyncpg.Connection, slot: str) -> list[str]:
    """The booking system's own live holds of the slot (person refs)."""
    rows = await db.fetch(
        "SELECT person_ref FROM sandbox.booking_holds WHERE slot_id = $1 AND NOT released AND expires_at > now()",
        slot,
    )
    return sorted(r["person_ref"] for r in rows)


async def upstream_booked(sandbox: httpx.AsyncClient, slot: str) -> list[str]:
    bookings = (await sandbox.get(f"/booking/_control/slots/{slot}/bookings")).json()["bookings"]
    return sorted(b["person_ref"] for b in bookings if b["status"] in ("booked", "checked_in"))


@pytest.mark.slow
async def test_five_cancellations_make_five_offers_to_the_first_five_and_lapsed_ones_move_on(
    make_client, sandbox_url, sandbox, db
) -> None:
    started = time.monotonic()
    a = await make_client(**_settings(sandbox_url))
    b = await make_client(**_settings(sandbox_url))
    roots = [a.app.state.root, b.app.state.root]  # type: ignore[attr-defined]
    bookers = await asyncio.gather(*(login_resident(a, sandbox) for _ in range(CAPACITY)))
    waiters: list[dict] = []
    for _ in range(0, WAITERS, 10):
        waiters += await asyncio.gather(*(login_resident(b, sandbox) for _ in range(10)))
    item, day, slot, slots = await _a_full_day(a, bookers[0], sandbox, db, index=3, seats=CAPACITY)
    # The booking system's own capacity check is off: what is shown is that the BFF never offers
    # more seats than are free, across replicas (its slot-row lock), not that upstream refuses.
    await sandbox.put("/booking/_control/settings", json={"enforceCapacity": False})
    try:
        # While a seat is free, nobody queues: the resident is told to book.
        early = await join(a, waiters[0], _join_body(item, day))
        assert early.status_code == 409 and early.json()["code"] == "seats_available", early.text
        assert early.json()["slotId"] == slot and early.json()["detail"].startswith("这些日期仍有"), (
            early.text
        )
        booked = [await book(a, who, slot) for who in bookers]
        assert await upstream_available(sandbox, slot) == 0

        # 50 residents join, alternately on each replica, in a known order.
        entries = []
        for n, who in enumerate(waiters):
            joined = await join((a, b)[n % 2], who, _join_body(item, day))
            assert joined.status_code == 201, joined.text
            assert joined.json()["status"] == "waiting" and joined.json()["position"] == n + 1, joined.text
            entries.append(joined.json()["id"])
        assert [e["position"] for e in await mine(a, waiters[-1])] == [WAITERS]

        # 5 bookings cancelled at once through both replicas, while both replicas' jobs also scan.
        cancels = [
            (a, b)[n % 2].post(f"/api/v1/appointments/{appt['id']}/cancel", headers=auth(who, key()))
            for n, (who, appt) in enumerate(zip(bookers, booked, strict=True))
        ]
        results = await asyncio.gather(*cancels, *(root.waitlist.run() for root in roots for _ in range(2)))
        assert all(r.status_code == 200 for r in results[:CAPACITY]), [r.text for r in results[:CAPACITY]]
        await asyncio.gather(*(root.waitlist.run() for root in roots))

        # Exactly five offers, to the first five in line, each a live hold at the booking system.
        assert await statuses(db, entries) == ["offered"] * CAPACITY + ["waiting"] * (WAITERS - CAPACITY)
        first_five = sorted(w["person_id"] for w in waiters[:CAPACITY])
        assert await upstream_live_holds(db, slot) == first_five
        assert await upstream_available(sandbox, slot) == 0 and await local_taken(db, slot) == CAPACITY
        told = await db.fetch(
            "SELECT person_id, payload FROM bff.outbox WHERE topic = 'appointment.waitlist_offer' AND payload->>'slotId' = $1",
            slot,
        )
        assert sorted(r["person_id"] for r in told) == first_five
        offer = (await mine(b, waiters[0]))[0]
        assert offer["status"] == "offered" and offer["offer"]["slotId"] == slot, offer
        assert (await mine(a, waiters[CAPACITY]))[0]["position"] == 1

        # Two claim their seat by booking the held slot; three let it lapse.
        for who in waiters[:2]:
            held = (await mine(a, who))[0]["offer"]["holdId"]
            claimed = await a.post("/api/v1/appointments", json={"holdId": held}, headers=auth(who, key()))
            assert claimed.status_code == 201 and claimed.json()["slotId"] == slot, claimed.text
        await asyncio.sleep(OFFER_TTL_S + 0.5)
        await asyncio.gather(*(root.waitlist.run() for root in roots))
        await asyncio.gather(*(root.waitlist.run() for root in roots))
        expected = ["booked"] * 2 + ["missed"] * 3 + ["offered"] * 3 + ["waiting"] * (WAITERS - 8)
        assert await statuses(db, entries) == expected
        assert await upstream_booked(sandbox, slot) == sorted(w["person_id"] for w in waiters[:2])
        assert await upstream_live_holds(db, slot) == sorted(w["person_id"] for w in waiters[5:8])

        # One of the next three leaves the line: the seat held for them goes to the ninth.
        leaving = (await mine(b, waiters[5]))[0]["id"]
        left = await b.delete(f"/api/v1/appointments/waitlist/{leaving}", headers=auth(waiters[5], key()))
        assert left.status_code == 200 and left.json()["status"] == "left", left.text
        expected[5], expected[8] = "left", "offered"
        assert await statuses(db, entries) == expected
        assert await upstream_live_holds(db, slot) == sorted(w["person_id"] for w in (*waiters[6:9],))

        # Never more than the seats: the booking system's own counts and ours agree.
        assert (
            len(await upstream_booked(sandbox, slot)) + len(await upstream_live_holds(db, slot)) == CAPACITY
        )
        assert await upstream_available(sandbox, slot) == 0 and await local_taken(db, slot) == CAPACITY
        offers = await db.fetchval(
            "SELECT count(*) FROM bff.outbox WHERE topic = 'appointment.waitlist_offer' AND payload->>'slotId' = $1",
            slot,
        )
        assert offers == 9  # 5, then 3 after the lapse, then 1 after the leave
    finally:
        await sandbox.put("/booking/_control/settings", json={"enforceCapacity": True})
        await _set_capacity(sandbox, dict.fromkeys(slots, 4))
    assert time.monotonic() - started < 90


async def test_the_cap_leaving_and_bad_input_that_changes_nothing(
    make_client, sandbox_url, sandbox, db
) -> None:
    client = await make_client(**_settings(sandbox_url, waitlist_max_per_person=1))
    who = await login_resident(client, sandbox)
    other = await login_resident(client, sandbox)
    item, day, _, slots = await _a_full_day(client, who, sandbox, db, index=2, seats=0)
    _, next_day, _, more = await _a_full_day(client, who, sandbox, db, index=3, seats=0, item=item)
    try:
        idem = key()
        first = await join(client, who, _join_body(item, day), idem)
        assert first.status_code == 201 and first.json()["position"] == 1, first.text
        replay = await join(client, who, _join_body(item, day), idem)
        assert replay.content == first.content and replay.headers.get("idempotent-replayed") == "true"
        count = await db.fetchval("SELECT count(*) FROM bff.waitlist_entries")

        refusals = [
            (await join(client, who, _join_body(item, day)), 409, "waitlist_duplicate"),
            (
                await join(client, who, {**_join_body(item, day), "dateTo": "2020-01-01"}),
                422,
                "waitlist_range_invalid",
            ),
            (await join(client, who, _join_body(item, "2020-01-01")), 422, "waitlist_range_invalid"),
            (await join(client, who, _join_body(item, "tomorrow")), 422, "waitlist_range_invalid"),
            (await join(client, who, {**_join_body(item, day), "hallId": "../x"}), 400, "validation_failed"),
            (await join(client, who, {**_join_body(item, day), "extra": 1}), 400, None),
            (
                await client.post(
                    "/api/v1/appointments/waitlist", json=_join_body(item, day), headers=auth(who)
                ),
                400,
                "idempotency_key_missing",
            ),
        ]
        for response, status, code in refusals:
            assert response.status_code == status, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            if code is not None:
                assert response.json()["code"] == code, response.text
        # The cap counts the entries of the person, across items and days.
        capped = await join(client, who, _join_body(item, next_day))
        assert capped.status_code == 409 and capped.json()["code"] == "waitlist_cap_reached", capped.text
        assert "最多排队" in capped.json()["detail"]
        assert await db.fetchval("SELECT count(*) FROM bff.waitlist_entries") == count

        # Leaving: not someone else's entry; one's own, once (a retry replays), then the cap is free.
        entry = first.json()["id"]
        foreign = await client.delete(f"/api/v1/appointments/waitlist/{entry}", headers=auth(other, key()))
        assert foreign.status_code == 404 and foreign.json()["code"] == "waitlist_entry_not_found", (
            foreign.text
        )
        leave_key = key()
        left = await client.delete(f"/api/v1/appointments/waitlist/{entry}", headers=auth(who, leave_key))
        assert left.status_code == 200 and left.json()["status"] == "left", left.text
        again = await client.delete(f"/api/v1/appointments/waitlist/{entry}", headers=auth(who, leave_key))
        assert again.content == left.content
        assert await mine(client, who) == []
        assert (await join(client, who, _join_body(item, next_day))).status_code == 201
    finally:
        await _set_capacity(sandbox, dict.fromkeys([*slots, *more], 4))
