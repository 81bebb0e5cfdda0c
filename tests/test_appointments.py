"""Appointments: slots, holds, bookings, caps and blocks, cancel, reschedule, kiosk check-in, and
bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_journey_helpers import (
    auth,
    book,
    bookable_item,
    first_slot,
    key,
    open_days,
    today_china,
    unbookable_item,
    upstream_urls,
)


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


async def count(db, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM bff.{table}"))


async def test_slots_view_and_booking(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    day = (await open_days(client, who, item))[0]
    assert day["open"] and day["slots"][0]["startsAt"].endswith("+08:00")
    slot = day["slots"][0]
    assert slot["available"] <= slot["capacity"]
    appointment = await book(client, who, slot["slotId"])
    assert appointment["status"] == "booked" and appointment["bookingNo"]
    listed = (await client.get("/api/v1/appointments", headers=auth(who))).json()
    assert [a["id"] for a in listed["items"]] == [appointment["id"]]
    detail = await client.get(f"/api/v1/appointments/{appointment['id']}", headers=auth(who))
    assert detail.json()["status"] == "booked"
    # The seat is counted by the booking system too.
    again = (
        await client.get(
            f"/api/v1/halls/{item['hall']}/slots",
            params={"item": item["code"], "date": day["date"]},
            headers=auth(who),
        )
    ).json()
    assert again["slots"][0]["available"] == slot["available"] - 1


async def test_hold_then_book_and_hold_quota(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    day = (await open_days(client, who, item))[0]
    slots = [s["slotId"] for s in day["slots"][:3]]
    holds = []
    for slot_id in slots[:2]:
        response = await client.post(
            "/api/v1/appointments/holds", json={"slotId": slot_id}, headers=auth(who, key())
        )
        assert response.status_code == 201, response.text
        holds.append(response.json())
    before = await count(db, "appointment_holds")
    third = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slots[2]}, headers=auth(who, key())
    )
    assert third.status_code == 409
    assert third.json()["code"] == "hold_quota_exceeded"
    assert await count(db, "appointment_holds") == before
    booked = await client.post(
        "/api/v1/appointments", json={"holdId": holds[0]["holdId"]}, headers=auth(who, key())
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["slotId"] == slots[0]
    # The hold is used up: it cannot book twice, and it no longer counts against the quota.
    twice = await client.post(
        "/api/v1/appointments", json={"holdId": holds[0]["holdId"]}, headers=auth(who, key())
    )
    assert twice.status_code == 409 and twice.json()["code"] == "hold_expired"


async def test_per_person_cap_is_explained(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    day = (await open_days(client, who, item))[0]
    await book(client, who, day["slots"][0]["slotId"])
    before = await count(db, "appointments")
    second = await client.post(
        "/api/v1/appointments", json={"slotId": day["slots"][1]["slotId"]}, headers=auth(who, key())
    )
    assert second.status_code == 409
    problem = second.json()
    assert problem["code"] == "booking_cap_reached"
    assert problem["period"] == "day"
    assert problem["detail"] == "已达预约上限：每天最多预约1次", problem
    assert await count(db, "appointments") == before


async def test_two_no_shows_block_online_booking(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 3)
    first = await book(client, who, days[0]["slots"][0]["slotId"])
    assert (await sandbox.post(f"/booking/_control/bookings/{first['bookingNo']}/no-show")).status_code == 201
    detail = (await client.get(f"/api/v1/appointments/{first['id']}", headers=auth(who))).json()
    assert detail["status"] == "no_show"
    # After the first no-show the resident is warned, not blocked.
    second = await book(client, who, days[1]["slots"][0]["slotId"])
    assert second["noShowWarning"] is True
    assert (
        await sandbox.post(f"/booking/_control/bookings/{second['bookingNo']}/no-show")
    ).status_code == 201
    blocked = await client.post(
        "/api/v1/appointments", json={"slotId": days[2]["slots"][0]["slotId"]}, headers=auth(who, key())
    )
    assert blocked.status_code == 403, blocked.text
    assert blocked.json()["code"] == "booking_blocked"
    assert blocked.json()["blockedUntil"]


async def test_cancel_and_reschedule(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    appointment = await book(client, who, days[0]["slots"][0]["slotId"])
    moved = await client.post(
        f"/api/v1/appointments/{appointment['id']}/reschedule",
        json={"slotId": days[1]["slots"][1]["slotId"]},
        headers=auth(who, key()),
    )
    assert moved.status_code == 201, moved.text
    new = moved.json()
    assert new["status"] == "booked" and new["rescheduledFrom"] == appointment["id"]
    old = (await client.get(f"/api/v1/appointments/{appointment['id']}", headers=auth(who))).json()
    assert old["status"] == "cancelled"
    cancelled = await client.post(f"/api/v1/appointments/{new['id']}/cancel", headers=auth(who, key()))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    booking = (await sandbox.get(f"/booking/bookings/{new['bookingNo']}")).json()
    assert booking["status"] == "cancelled"
    again = await client.post(
        f"/api/v1/appointments/{appointment['id']}/reschedule",
        json={"slotId": days[1]["slots"][2]["slotId"]},
        headers=auth(who, key()),
    )
    assert again.status_code == 409 and again.json()["code"] == "appointment_not_reschedulable"


async def test_kiosk_check_in_gives_a_ticket(client, sandbox, db) -> None:
    phone = await login_resident(client, sandbox)
    item = await bookable_item(db)
    day = (await open_days(client, phone, item))[0]
    appointment = await book(client, phone, day["slots"][0]["slotId"])
    path = f"/api/v1/appointments/{appointment['id']}/check-in"
    # Only at a kiosk in the hall.
    refused = await client.post(path, headers=auth(phone, key()))
    assert refused.status_code == 403 and refused.json()["code"] == "channel_not_allowed"
    kiosk = await login_resident(client, sandbox, channel="kiosk", resident=phone["resident"])
    assert kiosk["person_id"] == phone["person_id"]
    # Not yet the day: the booking system refuses, and so do we, with a clear code.
    early = await client.post(path, headers=auth(kiosk, key(), **kiosk["kiosk"].headers("POST", path)))
    assert early.status_code == 409 and early.json()["code"] == "check_in_not_possible"
    # Move the booking system's clock to ten minutes before the slot.
    starts = day["slots"][0]["startsAt"]
    from datetime import datetime

    offset = int(
        (datetime.fromisoformat(starts) - timedelta(minutes=10)).timestamp() - datetime.now().timestamp()
    )
    await sandbox.put("/booking/_control/settings", json={"clockOffsetS": offset})
    try:
        done = await client.post(path, headers=auth(kiosk, key(), **kiosk["kiosk"].headers("POST", path)))
    finally:
        await sandbox.put("/booking/_control/settings", json={"clockOffsetS": 0})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "checked_in" and done.json()["ticketNo"].startswith("A")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slotId": "x", "extra": 1}, "extra"),
        ({"slotId": 42}, "slotId"),
        ({"slotId": "x", "holdId": "y"}, None),
        ({}, None),
    ],
)
async def test_bad_booking_bodies_change_nothing(client, sandbox, db, body, field) -> None:
    who = await login_resident(client, sandbox)
    before = await count(db, "appointments"), await count(db, "idempotency_keys")
    response = await client.post("/api/v1/appointments", json=body, headers=auth(who, key()))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field:
        assert field in response.json()["detail"]
    assert (await count(db, "appointments"), await count(db, "idempotency_keys")) == before


async def test_bad_slot_queries(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    past = (today_china() - timedelta(days=1)).isoformat()
    response = await client.get(
        f"/api/v1/halls/{item['hall']}/slots", params={"item": item["code"], "date": past}, headers=auth(who)
    )
    assert response.status_code == 422 and response.json()["code"] == "date_in_past"
    day = (today_china() + timedelta(days=3)).isoformat()
    other = await unbookable_item(db)
    response = await client.get(
        f"/api/v1/halls/{item['hall']}/slots", params={"item": other, "date": day}, headers=auth(who)
    )
    assert response.status_code == 422 and response.json()["code"] == "item_not_bookable_here"
    response = await client.get(
        f"/api/v1/halls/{item['hall']}/slots",
        params={"item": item["code"], "date": "2026-13-45"},
        headers=auth(who),
    )
    assert response.status_code == 400
    response = await client.get(
        "/api/v1/halls/H999999-01/slots", params={"item": item["code"], "date": day}, headers=auth(who)
    )
    assert response.status_code == 404 and response.json()["code"] == "hall_not_found"
    # An unknown slot id books nothing.
    before = await count(db, "appointments")
    response = await client.post(
        "/api/v1/appointments", json={"slotId": "H430000-01.nope.20261130.0900"}, headers=auth(who, key())
    )
    assert response.status_code == 404 and response.json()["code"] == "slot_not_found"
    assert await count(db, "appointments") == before


async def test_every_route_needs_a_token(client, sandbox, db) -> None:
    response = await client.post(
        "/api/v1/appointments", json={"slotId": "x"}, headers={"Idempotency-Key": key()}
    )
    assert response.status_code == 401


async def test_missing_idempotency_key_is_refused(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = await first_slot(client, who, item)
    before = await count(db, "appointments")
    response = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who))
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_missing"
    assert await count(db, "appointments") == before
