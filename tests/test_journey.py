"""The resident's journey over real HTTP against a real BFF process: mini-program login -> search ->
guide -> hold -> book -> apply -> accepted -> 补正 -> answer -> concluded -> rate, with the case
system's webhooks delivered to the process by the sandbox; timeline and countdown checked at each step."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import free_port, make_settings, start_process, stop_process, sync_once, wait_http
from tests.test_journey_helpers import advance, application, auth, bookable_item, key, serve_env, today_china

CHINA = timezone(timedelta(hours=8))


def china_noon(day: date) -> str:
    return datetime.combine(day, time(10, 0), CHINA).isoformat()


class Days:
    """An independent working-day counter over the holiday table's rows (not the code under test)."""

    def __init__(self, rows: list) -> None:
        self.holidays = {r["day"] for r in rows if r["kind"] == "holiday"}
        self.workdays = {r["day"] for r in rows if r["kind"] == "workday"}

    def working(self, day: date) -> bool:
        return day in self.workdays or (day.weekday() < 5 and day not in self.holidays)

    def between(self, after: date, until: date, skip: tuple[date, date] | None = None) -> int:
        n, d = 0, after
        while d < until:
            d += timedelta(days=1)
            if self.working(d) and not (skip and skip[0] < d <= skip[1]):
                n += 1
        return n

    def back(self, today: date, working_days: int) -> date:
        d, n = today, 0
        while n < working_days:
            d -= timedelta(days=1)
            if self.working(d):
                n += 1
        return d


@pytest.fixture
async def bff(services, sandbox_url) -> httpx.AsyncClient:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serve_env(services, sandbox_url, port, CASE_NOTIFY_URL=f"{url}/api/v1/case-events")
    # The catalogue mirror (search) is filled by the worker's sync job; run one sync first.
    await sync_once(make_settings(services, sandbox_url))
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-journey")
    try:
        await asyncio.to_thread(wait_http, f"{url}/healthz", proc)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop_process(proc)


async def wait_for(client: httpx.AsyncClient, who: dict, case_id: str, status: str) -> dict:
    for _ in range(100):
        detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
        if detail["case"]["status"] == status:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"case never reached {status}: {detail['case']['status']}")


async def test_resident_journey(bff, sandbox, db) -> None:
    days = Days(await db.fetch("SELECT day, kind FROM bff.holiday_calendar"))
    today = today_china()
    item = await bookable_item(db, main_only=True)  # search finds main items (子项 under them)
    name = await db.fetchval(
        "SELECT body ->> 'name' FROM sandbox.catalogue_entries WHERE catalog_code = $1 AND region_code = $2",
        item["code"],
        item["region"],
    )
    who = await login_resident(bff, sandbox, channel="miniprogram", level=3)
    assert who["channel"] == "miniprogram"

    # Search, then the guide.
    found = await bff.get("/api/v1/items", params={"q": name, "region": item["region"]})
    assert found.status_code == 200, found.text
    assert item["code"] in [i["code"] for i in found.json()["items"]], found.text[:500]
    guide = (await bff.get(f"/api/v1/items/{item['code']}", params={"region": item["region"]})).json()["item"]
    promise = guide["timeLimits"]["promisedWorkingDays"]
    assert guide["channels"]["bookable"]

    # Hold, then book from the hold.
    slots = None
    for offset in range(1, 15):
        response = await bff.get(
            f"/api/v1/halls/{item['hall']}/slots",
            params={"item": item["code"], "date": (today + timedelta(days=offset)).isoformat()},
            headers=auth(who),
        )
        if response.status_code == 200 and response.json()["slots"]:
            slots = response.json()["slots"]
            break
    assert slots
    hold = await bff.post(
        "/api/v1/appointments/holds", json={"slotId": slots[0]["slotId"]}, headers=auth(who, key())
    )
    assert hold.status_code == 201, hold.text
    booked = await bff.post(
        "/api/v1/appointments", json={"holdId": hold.json()["holdId"]}, headers=auth(who, key())
    )
    assert booked.status_code == 201 and booked.json()["status"] == "booked"

    # Apply.
    applied = await bff.post(
        "/api/v1/cases", json=await application(bff, who, item), headers=auth(who, key())
    )
    assert applied.status_code == 201, applied.text
    case_id, project_no = applied.json()["case"]["id"], applied.json()["case"]["projectNo"]
    assert [e["kind"] for e in applied.json()["timeline"]] == ["submitted"]
    assert applied.json()["countdown"] is None
    # No 补正 notice within 5 working days -> deemed accepted (行政许可法 art. 32).
    submitted_on = today
    deemed = date.fromisoformat(applied.json()["deemedAcceptedOn"])
    assert days.between(submitted_on, deemed) == 5 and days.working(deemed)

    # Accepted (dated a few working days back so the countdown has something to count).
    accepted_on = days.back(today, 4)
    await advance(sandbox, project_no, "accept", at=china_noon(accepted_on), opinion="材料齐全，予以受理")
    detail = await wait_for(bff, who, case_id, "accepted")
    used = days.between(accepted_on, today)
    assert detail["countdown"]["usedWorkingDays"] == used
    assert detail["countdown"]["remainingWorkingDays"] == max(0, promise - used)
    expected_promise = accepted_on
    while days.between(accepted_on, expected_promise) < promise:
        expected_promise += timedelta(days=1)
    assert detail["countdown"]["promiseDate"] == expected_promise.isoformat()

    # 承办, then 补正 requested two working days back: the clock is paused.
    await advance(sandbox, project_no, "step", step="承办", officer="李科员", opinion="拟同意，需补正签字页")
    await wait_for(bff, who, case_id, "in_progress")
    requested_on = days.back(today, 2)
    request = await advance(
        sandbox,
        project_no,
        "request_supplement",
        items=["申请表签字页"],
        at=china_noon(requested_on),
        opinion="缺签字",
    )
    detail = await wait_for(bff, who, case_id, "awaiting_supplement")
    assert detail["case"]["openSupplementId"] == request["data"]["supplement_id"]
    # Paused: the promised date stays visible (as if the clock resumed today), the days left frozen.
    assert detail["countdown"]["paused"] is True
    assert detail["countdown"]["promiseDate"] >= today.isoformat()
    frozen = days.between(accepted_on, requested_on)
    assert detail["countdown"]["usedWorkingDays"] == frozen
    assert detail["countdown"]["remainingWorkingDays"] == detail["countdown"]["promisedWorkingDays"] - frozen

    # Answer the 补正 today: suspended from the day after the request through today.
    answered = await bff.post(
        f"/api/v1/cases/{case_id}/supplements",
        json={"supplementId": request["data"]["supplement_id"], "answer": "已补签字页"},
        headers=auth(who, key()),
    )
    assert answered.status_code == 201, answered.text
    detail = await wait_for(bff, who, case_id, "in_progress")
    clock = detail["countdown"]
    assert clock["paused"] is False
    assert clock["usedWorkingDays"] == days.between(accepted_on, today, skip=(requested_on, today))
    assert clock["suspendedWorkingDays"] == days.between(requested_on, today)
    assert clock["remainingWorkingDays"] == max(0, promise - clock["usedWorkingDays"])
    assert detail["case"]["openSupplementId"] is None

    # 审核, 批准, concluded: issued.
    await advance(sandbox, project_no, "step", step="审核", officer="王科长", opinion="同意")
    await advance(sandbox, project_no, "step", step="批准", officer="赵处长", opinion="准予许可")
    await advance(sandbox, project_no, "conclude", result_code="0", licence_no="湘证2026000123")
    detail = await wait_for(bff, who, case_id, "concluded")
    assert detail["case"]["result"] == "issued" and detail["case"]["ratingDue"] is True
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds == [
        "submitted",
        "accepted",
        "step",
        "supplement_requested",
        "supplement_answered",
        "step",
        "step",
        "concluded",
    ]
    assert [e["seq"] for e in detail["timeline"]] == sorted(e["seq"] for e in detail["timeline"])
    assert [e.get("opinion") for e in detail["timeline"] if e["kind"] == "step"] == [
        "拟同意，需补正签字页",
        "同意",
        "准予许可",
    ]
    listed = (await bff.get("/api/v1/cases", headers=auth(who))).json()["items"]
    assert listed[0]["ratingDue"] is True

    # Rate (a bad rating: the follow-up is shown to the rater).
    indicators = dict.fromkeys(["整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"], 2)
    rated = await bff.post(
        f"/api/v1/cases/{case_id}/rating",
        json={"level": 2, "indicators": indicators, "comment": "等待时间较长"},
        headers=auth(who, key()),
    )
    assert rated.status_code == 201, rated.text
    rating = rated.json()
    assert rating["followUp"]["status"] == "pending" and rating["followUp"]["dueDate"]
    upstream_id = await db.fetchval(
        "SELECT upstream_rating_id FROM bff.ratings WHERE id = $1::uuid", rating["id"]
    )
    await sandbox.post(
        f"/ratings/_control/ratings/{upstream_id}/follow-up", json={"note": "已电话回访，致歉并改进"}
    )
    seen = (await bff.get(f"/api/v1/ratings/{rating['id']}", headers=auth(who))).json()
    assert seen["followUp"]["status"] == "called_back" and seen["followUp"]["note"]
    detail = (await bff.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["case"]["status"] == "rated" and detail["case"]["ratingDue"] is False
    assert detail["timeline"][-1]["kind"] == "rated"
    again = await bff.post(
        f"/api/v1/cases/{case_id}/rating",
        json={"level": 5, "indicators": dict.fromkeys(indicators, 5)},
        headers=auth(who, key()),
    )
    assert again.status_code == 409 and again.json()["code"] == "already_rated"

    # The resident heard about each change once, through the outbox (their own submission excluded).
    topics = await db.fetch(
        "SELECT payload ->> 'event' AS event FROM bff.outbox WHERE person_id = $1 AND topic = 'case.changed' ORDER BY id",
        who["person_id"],
    )
    assert [r["event"] for r in topics] == [
        "accepted",
        "step",
        "supplement_requested",
        "step",
        "step",
        "concluded",
    ]
    # Every event reached us by the sandbox's webhook, not by a reconciler.
    vias = await db.fetch(
        "SELECT via FROM bff.case_events WHERE case_id = $1::uuid AND type <> 'submitted'", case_id
    )
    assert {r["via"] for r in vias} <= {"webhook", "reply"}
    assert datetime.now(UTC)
