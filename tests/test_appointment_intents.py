# ruff: noqa: F811 - the fixtures imported from tests/test_worker_jobs.py are parameters here
"""Every upstream mutation of an appointment records its intent first and is settled from the
booking system's truth (issue 9 section 6): crashes at the exact moment between the booking
system's commit and ours (`kill -9` of a real `bff.cli serve` process), lost answers, answers of
503 with the breaker open (nothing sent) and the sandbox's fault injection.

The resident's view must end right: a cancel whose answer is lost never leaves the appointment
`booked` forever; a write answered "failed" ends failed or the resident learns it went through; a
hold answered 503 keeps no seat and counts against no quota; every 503 says `Retry-After`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.auth_helpers import login_resident
from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.test_journey_helpers import auth, bookable_item, key, open_days, serve_env
from tests.test_worker_jobs import (  # noqa: F401 - fixtures
    BOOKINGS,
    AnswerLoss,
    client,
    hop,
    job_settings,
    local_taken,
    make_old,
    pool,
    run_job,
    upstream_available,
    upstream_bookings,
    void_route,
)

HOLDS = ("POST", "/booking/holds")


def cancel_route(booking_no: str) -> tuple[str, str]:
    return ("POST", f"/booking/bookings/{booking_no}/cancel")


async def row(db: asyncpg.Connection, appointment_id: Any) -> asyncpg.Record:
    found = await db.fetchrow("SELECT * FROM bff.appointments WHERE id = $1", uuid.UUID(str(appointment_id)))
    assert found is not None
    return found


async def age_cancel(db: asyncpg.Connection, appointment_id: Any) -> None:
    """Two minutes pass for a cancel in doubt (the resolver leaves younger ones alone)."""
    await db.execute(
        "UPDATE bff.appointments SET cancel_requested_at = cancel_requested_at - interval '2 minutes'"
        " WHERE id = $1",
        uuid.UUID(str(appointment_id)),
    )


async def book(client: httpx.AsyncClient, who: dict[str, Any], slot: str) -> dict[str, Any]:
    made = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, key()))
    assert made.status_code == 201 and made.json()["status"] == "booked", made.text
    return dict(made.json())


# --- cancel: intent first, settled from the truth ---


async def test_a_cancel_whose_answer_is_lost_is_cancelling_and_a_new_cancel_settles_it(
    client, sandbox, db, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slots = (await open_days(client, who, item))[0]["slots"]
    slot, same_day = slots[2]["slotId"], slots[5]["slotId"]
    available, taken = await upstream_available(sandbox, slot), await local_taken(db, slot)
    made = await book(client, who, slot)
    route = cancel_route(made["bookingNo"])

    hop.lose[route] = "answer"
    lost = await client.post(f"/api/v1/appointments/{made['id']}/cancel", headers=auth(who, key()))
    assert lost.status_code == 503 and lost.json()["code"] == "upstream_unavailable", lost.text
    assert int(lost.headers["retry-after"]) >= 1
    del hop.lose[route]
    # The booking system cancelled; we did not hear: in doubt, not `booked`, the seat still counted.
    assert [b["status"] for b in await upstream_bookings(sandbox, slot, who["person_id"])] == ["cancelled"]
    assert (await row(db, made["id"]))["status"] == "cancelling"
    seen = await client.get(f"/api/v1/appointments/{made['id']}", headers=auth(who))
    assert seen.json()["status"] == "cancelling"
    assert await local_taken(db, slot) == taken + 1

    # A new cancel (a new key) retries the same request upstream and settles it.
    again = await client.post(f"/api/v1/appointments/{made['id']}/cancel", headers=auth(who, key()))
    assert again.status_code == 200 and again.json()["status"] == "cancelled", again.text
    assert hop.count(*route, "passed") == 1  # the same request id again: answered from its record
    assert [b["status"] for b in await upstream_bookings(sandbox, slot, who["person_id"])] == ["cancelled"]
    # The seat and the day cap are free again.
    assert await local_taken(db, slot) == taken
    assert await upstream_available(sandbox, slot) == available
    await book(client, who, same_day)


async def test_the_resolver_settles_cancels_answered_503_from_the_booking_systems_truth(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    first_slot, second_slot = days[0]["slots"][3]["slotId"], days[1]["slots"][3]["slotId"]
    first, second = await book(client, who, first_slot), await book(client, who, second_slot)

    # The first cancel reached the booking system (answer lost); the second never did.
    hop.lose[cancel_route(first["bookingNo"])] = "answer"
    hop.lose[cancel_route(second["bookingNo"])] = "request"
    for made in (first, second):
        lost = await client.post(f"/api/v1/appointments/{made['id']}/cancel", headers=auth(who, key()))
        assert lost.status_code == 503 and "retry-after" in lost.headers, lost.text
        assert (await row(db, made["id"]))["status"] == "cancelling"
    hop.lose.clear()
    lost_cancel = (await row(db, second["id"]))["cancel_request_id"]

    # Younger than a minute: maybe still in flight, left alone.
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert [(await row(db, m["id"]))["status"] for m in (first, second)] == ["cancelling", "cancelling"]

    for made in (first, second):
        await age_cancel(db, made["id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await row(db, first["id"]))["status"] == "cancelled"  # it did cancel
    assert (await row(db, second["id"]))["status"] == "booked"  # it never did: still booked
    assert [b["status"] for b in await upstream_bookings(sandbox, second_slot, who["person_id"])] == [
        "booked"
    ]
    # The lost cancel cannot arrive late and cancel behind the resident's back: it was voided.
    assert hop.count(*void_route(lost_cancel)) == 1
    late = await sandbox.post(
        f"/booking/bookings/{second['bookingNo']}/cancel", json={"request_id": str(lost_cancel)}
    )
    assert late.status_code == 409 and late.json()["error"] == "request_voided", late.text
    assert [b["status"] for b in await upstream_bookings(sandbox, second_slot, who["person_id"])] == [
        "booked"
    ]
    assert (await row(db, second["id"]))["cancel_request_id"] is None
    # The first day's seat and cap are free: the resident books that day again.
    await book(client, who, days[0]["slots"][6]["slotId"])
    # And the booked one can be cancelled normally.
    done = await client.post(f"/api/v1/appointments/{second['id']}/cancel", headers=auth(who, key()))
    assert done.status_code == 200 and done.json()["status"] == "cancelled", done.text


# --- kill -9 between the booking system's commit and ours ---


async def _serve_through(services, sandbox_url: str, hop: AnswerLoss) -> tuple[Any, str]:
    port = free_port()
    env = serve_env(
        services, sandbox_url, port, BOOKING_URL=f"{hop.url}/booking", API_WORKERS="1", LOG_LEVEL="WARNING"
    )
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-kill")
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}"


async def _killed_at(hop: AnswerLoss, proc: Any, route: tuple[str, str], send: Any) -> None:
    """Send one request to the process; kill -9 it the moment the booking system has answered."""
    hop.lose[route] = "kill"
    hop.on_answer = lambda: os.kill(proc.pid, signal.SIGKILL)
    try:
        await send()
        raise AssertionError("the process answered although it was killed")
    except httpx.HTTPError:
        pass
    finally:
        del hop.lose[route]
        hop.on_answer = None
    assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
    assert hop.count(*route, "killed") == 1


async def test_kill_9_between_the_booking_systems_commit_and_ours(
    client, services, sandbox_url, sandbox, db, redis, pool, job_settings, hop
) -> None:
    """A booking and a cancel, each killed after the booking system committed and before we did:
    nobody was answered, so the resolver completes each as the resident asked, once."""
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    kept_slot, new_slot = days[0]["slots"][7]["slotId"], days[1]["slots"][7]["slotId"]
    kept = await book(client, who, kept_slot)
    kept_available, new_available = (
        await upstream_available(sandbox, kept_slot),
        await upstream_available(sandbox, new_slot),
    )

    proc, url = await _serve_through(services, sandbox_url, hop)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            await _killed_at(
                hop,
                proc,
                cancel_route(kept["bookingNo"]),
                lambda: api.post(f"/api/v1/appointments/{kept['id']}/cancel", headers=auth(who, key())),
            )
        proc2, url2 = await _serve_through(services, sandbox_url, hop)
        try:
            async with httpx.AsyncClient(base_url=url2, timeout=30) as api:
                await _killed_at(
                    hop,
                    proc2,
                    BOOKINGS,
                    lambda: api.post(
                        "/api/v1/appointments", json={"slotId": new_slot}, headers=auth(who, key())
                    ),
                )
        finally:
            stop_process(proc2)
    finally:
        stop_process(proc)

    cancelled = await row(db, kept["id"])
    assert (cancelled["status"], cancelled["told_failed_at"]) == ("cancelling", None)
    pending = await db.fetchrow(
        "SELECT * FROM bff.appointments WHERE person_id = $1 AND slot_id = $2", who["person_id"], new_slot
    )
    assert pending is not None and (pending["status"], pending["told_failed_at"]) == ("pending", None)
    # The booking system did both.
    assert [b["status"] for b in await upstream_bookings(sandbox, kept_slot, who["person_id"])] == [
        "cancelled"
    ]
    assert [b["status"] for b in await upstream_bookings(sandbox, new_slot, who["person_id"])] == ["booked"]

    await age_cancel(db, kept["id"])
    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await row(db, kept["id"]))["status"] == "cancelled"
    booked = await row(db, pending["id"])
    assert booked["status"] == "booked"
    upstream_new = await upstream_bookings(sandbox, new_slot, who["person_id"])
    assert [(b["booking_no"], b["status"]) for b in upstream_new] == [(booked["booking_no"], "booked")]
    assert await upstream_available(sandbox, kept_slot) == kept_available + 1
    assert await upstream_available(sandbox, new_slot) == new_available - 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.appointments WHERE person_id = $1 AND status IN ('pending', 'cancelling')",
            who["person_id"],
        )
        == 0
    )
    listed = (await client.get("/api/v1/appointments", headers=auth(who))).json()["items"]
    assert {(a["id"], a["status"]) for a in listed} == {
        (kept["id"], "cancelled"),
        (str(pending["id"]), "booked"),
    }


# --- 503 with nothing sent, and holds answered 503 ---


async def _open_breaker(
    sandbox: httpx.AsyncClient, api: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str], day: str
) -> None:
    put = await sandbox.put("/_control/faults/booking", json={"errorRate": 1.0, "errorKind": "503"})
    assert put.status_code in (200, 204), put.text
    for _ in range(20):
        seen = await api.get(
            f"/api/v1/halls/{item['hall']}/slots",
            params={"item": item["code"], "date": day},
            headers=auth(who),
        )
        assert seen.status_code == 503 and "retry-after" in seen.headers, seen.text
        if "circuit open" in seen.json().get("detail", ""):
            break
    else:
        raise AssertionError("the breaker did not open")
    # The booking system is healthy again: whatever is refused now was refused by our breaker.
    await sandbox.delete("/_control/faults/booking")


async def test_writes_answered_503_with_the_breaker_open_leave_nothing_behind(
    make_client, sandbox_url, sandbox, db, redis, pool, job_settings, hop
) -> None:
    from tests.test_worker_jobs import _overrides

    api = await make_client(**_overrides(sandbox_url, hop), breaker_minimum_calls=3, breaker_open_s=2.0)
    who = await login_resident(api, sandbox)
    item = await bookable_item(db)
    days = await open_days(api, who, item, 2)
    old = await book(api, who, days[0]["slots"][9]["slotId"])
    new_slot, other = days[1]["slots"][9]["slotId"], days[1]["slots"][10]["slotId"]
    rows_before = await db.fetchval(
        "SELECT count(*) FROM bff.appointments WHERE person_id = $1", who["person_id"]
    )
    sent_bookings = hop.count(*BOOKINGS)
    await _open_breaker(sandbox, api, who, item, days[1]["date"])
    route = ("POST", f"/booking/bookings/{old['bookingNo']}/reschedule")

    move_key, book_key = key(), key()
    moved = await api.post(
        f"/api/v1/appointments/{old['id']}/reschedule", json={"slotId": new_slot}, headers=auth(who, move_key)
    )
    booked = await api.post("/api/v1/appointments", json={"slotId": other}, headers=auth(who, book_key))
    cancelled = await api.post(f"/api/v1/appointments/{old['id']}/cancel", headers=auth(who, key()))
    # (A booking is refused at the standing check before anything is written; a move and a cancel
    # record their intent first and take it back.)
    for answer, word in (
        (moved, "未做任何改约"),
        (booked, "circuit open"),
        (cancelled, "未做任何取消"),
    ):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert word in answer.json()["detail"]
    assert hop.count(*route) == 0 and hop.count(*BOOKINGS) == sent_bookings  # nothing was sent
    # Nothing is left behind: no pending row, the old booking stands as it was.
    assert (
        await db.fetchval("SELECT count(*) FROM bff.appointments WHERE person_id = $1", who["person_id"])
        == rows_before
    )
    assert (await row(db, old["id"]))["status"] == "booked"
    await make_old(db, who["person_id"])
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert (await row(db, old["id"]))["status"] == "booked"
    assert await upstream_bookings(sandbox, new_slot, who["person_id"]) == []

    # Retry-After later, the same keys start afresh and go through.
    await asyncio.sleep(2.2)
    moved = await api.post(
        f"/api/v1/appointments/{old['id']}/reschedule", json={"slotId": new_slot}, headers=auth(who, move_key)
    )
    assert moved.status_code == 201 and moved.json()["status"] == "booked", moved.text
    assert (await row(db, old["id"]))["status"] == "cancelled"


async def test_a_hold_answered_503_keeps_no_seat_and_no_quota(client, sandbox, db, hop) -> None:
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slots = (await open_days(client, who, item))[0]["slots"]
    slot = slots[11]["slotId"]
    taken = await local_taken(db, slot)

    # The booking system holds the seat, the answer is lost: twice, with two keys.
    hop.lose[HOLDS] = "answer"
    keys = [key(), key()]
    for k in keys:
        lost = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, k))
        assert lost.status_code == 503 and "retry-after" in lost.headers, lost.text
    del hop.lose[HOLDS]
    assert await local_taken(db, slot) == taken
    # Then the fault injection: the booking system answers 503 to everything.
    await sandbox.put("/_control/faults/booking", json={"errorRate": 1.0, "errorKind": "503"})
    for _ in range(2):
        lost = await client.post(
            "/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, key())
        )
        assert lost.status_code == 503 and "retry-after" in lost.headers, lost.text
    await sandbox.delete("/_control/faults/booking")
    assert await local_taken(db, slot) == taken
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.appointment_holds WHERE person_id = $1 AND released_at IS NULL",
            who["person_id"],
        )
        == 0
    )

    # Four 503s later the quota (2) is whole: a retry of the first key takes its hold, a second
    # slot is held too.
    again = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, keys[0]))
    assert again.status_code == 201, again.text
    second = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slots[12]["slotId"]}, headers=auth(who, key())
    )
    assert second.status_code == 201, second.text
    assert await local_taken(db, slot) == taken + 1
    booked = await client.post(
        "/api/v1/appointments", json={"holdId": again.json()["holdId"]}, headers=auth(who, key())
    )
    assert booked.status_code == 201 and booked.json()["status"] == "booked", booked.text
    assert await local_taken(db, slot) == taken + 1


async def test_a_hold_whose_answer_was_lost_is_voided_in_the_booking_system(
    client, sandbox, db, redis, pool, job_settings, hop
) -> None:
    """The booking system made the hold and its answer was lost: the resolver voids that request
    there and releases the hold it made, rather than leave the seat blocked for other residents
    until the hold's TTL; a later retry of the key asks afresh and gets a live hold it can book."""
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][-2]["slotId"]
    available = await upstream_available(sandbox, slot)

    hop.lose[HOLDS] = "answer"
    hold_key = key()
    lost = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, hold_key))
    del hop.lose[HOLDS]
    assert lost.status_code == 503 and "retry-after" in lost.headers, lost.text
    assert await upstream_available(sandbox, slot) == available - 1  # it holds the seat there
    hold_id = await db.fetchval("SELECT id FROM bff.appointment_holds WHERE person_id = $1", who["person_id"])

    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert hop.count(*void_route(hold_id)) == 1
    assert await upstream_available(sandbox, slot) == available  # voided and released there
    await run_job("appointments_resolve_pending", pool, redis, job_settings)
    assert hop.count(*void_route(hold_id)) == 1  # settled once

    again = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, hold_key)
    )
    assert again.status_code == 201 and again.json()["holdId"] == str(hold_id), again.text
    assert await upstream_available(sandbox, slot) == available - 1
    booked = await client.post(
        "/api/v1/appointments", json={"holdId": again.json()["holdId"]}, headers=auth(who, key())
    )
    assert booked.status_code == 201 and booked.json()["status"] == "booked", booked.text
    assert await upstream_available(sandbox, slot) == available - 1


async def test_the_detail_says_when_it_is_our_copy_only(client, sandbox, db) -> None:
    """Served from our copy while the booking system cannot be asked: labelled stale, with the
    time of our copy; confirmed by the booking system: ok."""
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    made = await book(client, who, (await open_days(client, who, item))[0]["slots"][-1]["slotId"])
    seen = (await client.get(f"/api/v1/appointments/{made['id']}", headers=auth(who))).json()
    assert seen["status"] == "booked" and seen["freshness"]["status"] == "ok"
    await sandbox.put("/_control/faults/booking", json={"errorRate": 1.0, "errorKind": "503"})
    try:
        down = await client.get(f"/api/v1/appointments/{made['id']}", headers=auth(who))
    finally:
        await sandbox.delete("/_control/faults/booking")
    assert down.status_code == 200, down.text
    assert down.json()["status"] == "booked"
    assert down.json()["freshness"]["status"] == "stale"
    assert down.json()["freshness"]["asOf"].endswith("+08:00")


async def test_a_check_in_whose_answer_was_lost_is_learnt_by_the_next_one(client, sandbox, db, hop) -> None:
    phone = await login_resident(client, sandbox)
    item = await bookable_item(db)
    day = (await open_days(client, phone, item))[0]
    made = await book(client, phone, day["slots"][0]["slotId"])
    kiosk = await login_resident(client, sandbox, channel="kiosk", resident=phone["resident"])
    path = f"/api/v1/appointments/{made['id']}/check-in"
    route = ("POST", f"/booking/bookings/{made['bookingNo']}/check-in")
    offset = int(
        (datetime.fromisoformat(day["slots"][0]["startsAt"]) - timedelta(minutes=10)).timestamp()
        - datetime.now().timestamp()
    )
    await sandbox.put("/booking/_control/settings", json={"clockOffsetS": offset})
    try:
        hop.lose[route] = "answer"
        lost = await client.post(path, headers=auth(kiosk, key(), **kiosk["kiosk"].headers("POST", path)))
        assert lost.status_code == 503 and "retry-after" in lost.headers, lost.text
        del hop.lose[route]
        assert (await row(db, made["id"]))["status"] == "booked"  # we did not hear
        # The resident taps again (a new request): the booking system's truth is the answer.
        again = await client.post(path, headers=auth(kiosk, key(), **kiosk["kiosk"].headers("POST", path)))
    finally:
        await sandbox.put("/booking/_control/settings", json={"clockOffsetS": 0})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "checked_in" and again.json()["ticketNo"].startswith("A")
    assert (await row(db, made["id"]))["status"] == "checked_in"
