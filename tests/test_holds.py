"""Holds that could never become bookings are refused, and a hold can be let go (issue 9 §2)."""

from __future__ import annotations

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_journey_helpers import auth, bookable_item, key, open_days, upstream_urls
from tests.test_worker_jobs import local_taken, upstream_available


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url), hold_quota=3, hold_day_quota=2)


async def hold(client: httpx.AsyncClient, who: dict, slot: str) -> httpx.Response:
    return await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, key()))


async def test_holds_that_could_not_become_bookings_are_refused(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 3)
    slots = days[0]["slots"]
    first = await hold(client, who, slots[0]["slotId"])
    assert first.status_code == 201, first.text
    # A second hold of the same slot.
    twice = await hold(client, who, slots[0]["slotId"])
    assert twice.status_code == 409 and twice.json()["code"] == "hold_duplicate", twice.text
    # More than HOLD_DAY_QUOTA for one day.
    assert (await hold(client, who, slots[1]["slotId"])).status_code == 201
    third = await hold(client, who, slots[2]["slotId"])
    assert third.status_code == 409 and third.json()["code"] == "hold_quota_exceeded", third.text
    assert "同一天" in third.json()["detail"], third.text
    # A booking cap: booked on day 2 already (one a day), a hold that day would never become one.
    booked = await client.post(
        "/api/v1/appointments", json={"slotId": days[1]["slots"][0]["slotId"]}, headers=auth(who, key())
    )
    assert booked.status_code == 201, booked.text
    capped = await hold(client, who, days[1]["slots"][1]["slotId"])
    assert capped.status_code == 409 and capped.json()["code"] == "booking_cap_reached", capped.text
    # HOLD_QUOTA at once across days: a third hold (day 3) is fine, a fourth is not.
    assert (await hold(client, who, days[2]["slots"][0]["slotId"])).status_code == 201
    fourth = await hold(client, who, days[2]["slots"][1]["slotId"])
    assert fourth.status_code == 409 and fourth.json()["code"] == "hold_quota_exceeded", fourth.text
    # None of the refused holds took a seat.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.appointment_holds WHERE person_id = $1 AND released_at IS NULL AND consumed_at IS NULL",
            who["person_id"],
        )
        == 3
    )


async def test_a_hold_let_go_frees_its_seat_at_once_here_and_upstream(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    other = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][-2]["slotId"]
    available, taken = await upstream_available(sandbox, slot), await local_taken(db, slot)
    held = await hold(client, who, slot)
    assert held.status_code == 201, held.text
    assert (await upstream_available(sandbox, slot), await local_taken(db, slot)) == (
        available - 1,
        taken + 1,
    )
    hold_id = held.json()["holdId"]

    # Another resident cannot let it go (it is not theirs).
    foreign = await client.delete(f"/api/v1/appointments/holds/{hold_id}", headers=auth(other, key()))
    assert foreign.status_code == 404, foreign.text
    idem = key()
    gone = await client.delete(f"/api/v1/appointments/holds/{hold_id}", headers=auth(who, idem))
    assert gone.status_code == 200 and gone.json()["holdId"] == hold_id, gone.text
    assert (await upstream_available(sandbox, slot), await local_taken(db, slot)) == (available, taken)
    replay = await client.delete(f"/api/v1/appointments/holds/{hold_id}", headers=auth(who, idem))
    assert replay.content == gone.content and replay.headers.get("idempotent-replayed") == "true"
    # A let-go hold cannot be booked; the same slot can be held again.
    booked = await client.post("/api/v1/appointments", json={"holdId": hold_id}, headers=auth(who, key()))
    assert booked.status_code == 409 and booked.json()["code"] == "hold_expired", booked.text
    assert (await hold(client, who, slot)).status_code == 201
