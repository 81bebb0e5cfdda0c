"""Idempotency-Key on every mutating route: 50 concurrent duplicates make one effect and the
same answer; a reused key with another body is 422; keys are per user; a replay is byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_journey_helpers import (
    PDF,
    advance,
    application,
    apply,
    auth,
    book,
    bookable_item,
    conclude,
    deliver,
    key,
    open_days,
    upstream_urls,
)

DUPLICATES = 50


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


async def storm(send: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, list[httpx.Response]]:
    """Fire 50 identical requests at once; then one more after they settle (a late retry)."""
    responses = await asyncio.gather(*(send() for _ in range(DUPLICATES)))
    late = await send()
    return late, list(responses)


def assert_one_answer(late: httpx.Response, responses: list[httpx.Response], status: int) -> None:
    assert late.status_code == status, late.text
    answered = [r for r in responses if r.status_code != 409]
    in_flight = [r for r in responses if r.status_code == 409]
    assert answered, "at least the first request must have been answered"
    # Every answer is byte for byte the same; every other request was told to retry.
    assert {(r.status_code, r.content) for r in answered} == {(late.status_code, late.content)}
    assert all(r.json()["code"] == "idempotency_in_progress" for r in in_flight)
    assert all(r.headers.get("retry-after") for r in in_flight)


async def test_book_storm(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][0]["slotId"]
    idem = key()
    late, responses = await storm(
        lambda: client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    )
    assert_one_answer(late, responses, 201)
    assert late.headers["idempotent-replayed"] == "true"
    assert (
        await db.fetchval("SELECT count(*) FROM bff.appointments WHERE person_id = $1", who["person_id"]) == 1
    )
    upstream = (await sandbox.get(f"/booking/_control/slots/{slot}/bookings")).json()["bookings"]
    assert [b["person_ref"] for b in upstream].count(who["person_id"]) == 1


async def test_hold_storm(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][1]["slotId"]
    idem = key()
    late, responses = await storm(
        lambda: client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(who, idem))
    )
    assert_one_answer(late, responses, 201)
    assert (
        await db.fetchval("SELECT count(*) FROM bff.appointment_holds WHERE person_id = $1", who["person_id"])
        == 1
    )


async def test_cancel_and_reschedule_storms(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    days = await open_days(client, who, item, 2)
    first = await book(client, who, days[0]["slots"][2]["slotId"])
    idem = key()
    late, responses = await storm(
        lambda: client.post(
            f"/api/v1/appointments/{first['id']}/reschedule",
            json={"slotId": days[1]["slots"][2]["slotId"]},
            headers=auth(who, idem),
        )
    )
    assert_one_answer(late, responses, 201)
    rows = await db.fetch(
        "SELECT status FROM bff.appointments WHERE person_id = $1 ORDER BY created_at", who["person_id"]
    )
    assert [r["status"] for r in rows] == ["cancelled", "booked"]
    moved = late.json()
    idem = key()
    late, responses = await storm(
        lambda: client.post(f"/api/v1/appointments/{moved['id']}/cancel", headers=auth(who, idem))
    )
    assert_one_answer(late, responses, 200)
    assert late.json()["status"] == "cancelled"


async def test_check_in_storm(client, sandbox, db) -> None:
    phone = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    day = (await open_days(client, phone, item))[0]
    appointment = await book(client, phone, day["slots"][3]["slotId"])
    kiosk = await login_resident(client, sandbox, channel="kiosk", resident=phone["resident"])
    path = f"/api/v1/appointments/{appointment['id']}/check-in"
    from datetime import datetime, timedelta

    offset = int(
        (datetime.fromisoformat(day["slots"][3]["startsAt"]) - timedelta(minutes=5)).timestamp()
        - datetime.now().timestamp()
    )
    await sandbox.put("/booking/_control/settings", json={"clockOffsetS": offset})
    idem = key()
    try:
        late, responses = await storm(
            lambda: client.post(path, headers=auth(kiosk, idem, **kiosk["kiosk"].headers("POST", path)))
        )
    finally:
        await sandbox.put("/booking/_control/settings", json={"clockOffsetS": 0})
    assert_one_answer(late, responses, 200)
    assert late.json()["ticketNo"]


async def test_upload_apply_supplement_and_rating_storms(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    # Upload.
    idem = key()
    late, responses = await storm(
        lambda: client.post(
            "/api/v1/uploads",
            params={"name": "a.pdf"},
            content=PDF,
            headers=auth(who, idem, **{"Content-Type": "application/pdf"}),
        )
    )
    assert_one_answer(late, responses, 201)
    assert await db.fetchval("SELECT count(*) FROM bff.uploads WHERE person_id = $1", who["person_id"]) == 1
    # Apply.
    body = await application(client, who, item)
    idem = key()
    late, responses = await storm(lambda: client.post("/api/v1/cases", json=body, headers=auth(who, idem)))
    assert_one_answer(late, responses, 201)
    assert await db.fetchval("SELECT count(*) FROM bff.cases WHERE person_id = $1", who["person_id"]) == 1
    case = late.json()
    project_no = case["case"]["projectNo"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.case_applications WHERE applicant_ref = $1", who["person_id"]
        )
        == 1
    )
    # Supplement.
    for action in ("accept",):
        assert (await deliver(client, await advance(sandbox, project_no, action))).status_code == 200
    request = await advance(
        sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字"
    )
    assert (await deliver(client, request)).status_code == 200
    answer = {"supplementId": request["data"]["supplement_id"], "answer": "已补签"}
    idem = key()
    late, responses = await storm(
        lambda: client.post(
            f"/api/v1/cases/{case['case']['id']}/supplements", json=answer, headers=auth(who, idem)
        )
    )
    assert_one_answer(late, responses, 201)
    answered = await db.fetchval(
        "SELECT count(*) FROM sandbox.case_events WHERE project_no = $1 AND type = 'supplement_answered'",
        project_no,
    )
    assert answered == 1
    # Rating.
    step = await advance(sandbox, project_no, "step", step="审核", opinion="同意")
    done = await advance(sandbox, project_no, "conclude", result_code="0")
    for event in (step, done):
        assert (await deliver(client, event)).status_code == 200
    rating = {
        "level": 5,
        "indicators": dict.fromkeys(
            ["整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"], 5
        ),
        "comment": "好",
    }
    idem = key()
    late, responses = await storm(
        lambda: client.post(
            f"/api/v1/cases/{case['case']['id']}/rating", json=rating, headers=auth(who, idem)
        )
    )
    assert_one_answer(late, responses, 201)
    assert (
        await db.fetchval("SELECT count(*) FROM sandbox.ratings WHERE service_instance_id = $1", project_no)
        == 1
    )


async def test_same_key_other_body_is_422_and_changes_nothing(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    slots = (await open_days(client, who, item))[0]["slots"]
    idem = key()
    first = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slots[4]["slotId"]}, headers=auth(who, idem)
    )
    assert first.status_code == 201
    other = await client.post(
        "/api/v1/appointments/holds", json={"slotId": slots[5]["slotId"]}, headers=auth(who, idem)
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # Another route with the same key is another request, too.
    elsewhere = await client.post(
        "/api/v1/appointments", json={"slotId": slots[4]["slotId"]}, headers=auth(who, idem)
    )
    assert elsewhere.status_code == 422
    assert (
        await db.fetchval("SELECT count(*) FROM bff.appointment_holds WHERE person_id = $1", who["person_id"])
        == 1
    )
    assert (
        await db.fetchval("SELECT count(*) FROM bff.appointments WHERE person_id = $1", who["person_id"]) == 0
    )


async def test_keys_are_scoped_per_user(client, sandbox, db) -> None:
    alice = await login_resident(client, sandbox, level=3)
    bob = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    slot = (await open_days(client, alice, item))[0]["slots"][6]["slotId"]
    idem = key()
    a = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(alice, idem))
    b = await client.post("/api/v1/appointments/holds", json={"slotId": slot}, headers=auth(bob, idem))
    assert a.status_code == b.status_code == 201
    assert a.json()["holdId"] != b.json()["holdId"]


async def test_refusals_are_replayed_and_upstream_failures_are_not(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    slot = (await open_days(client, who, item))[0]["slots"][7]["slotId"]
    # A 5xx answer is not kept: a retry with the same key runs again and succeeds.
    idem = key()
    await sandbox.put("/_control/faults/booking", json={"errorRate": 1.0, "errorKind": "503"})
    try:
        failed = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    finally:
        await sandbox.delete("/_control/faults/booking")
    assert failed.status_code == 503
    retried = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert retried.status_code == 201, retried.text
    # A refusal is the answer to its key from then on.
    idem = key()
    refused = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert refused.status_code == 409 and refused.json()["code"] == "booking_cap_reached"
    replay = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=auth(who, idem))
    assert (replay.status_code, replay.content) == (refused.status_code, refused.content)


async def test_records_are_kept_at_least_a_day(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    await apply(client, who, await bookable_item(db))
    shortest = await db.fetchval(
        "SELECT min(expires_at - created_at) FROM bff.idempotency_keys WHERE subject = $1", who["person_id"]
    )
    from datetime import timedelta

    assert shortest >= timedelta(hours=24)


_ = (conclude, Any)
