"""Issue 9 §5: shapes a phone can use — appointments named and linked, the case list with its
clock, labelled timeline details in camelCase, China time on display fields, the promised date
kept visible during 补正, `make run`'s webhook wiring."""

from __future__ import annotations

import re

import httpx
import pytest

from bff.cli import dev_notify_url
from bff.platform.settings import Settings
from tests.auth_helpers import login_resident
from tests.conftest import make_settings, sync_once
from tests.test_journey_helpers import (
    advance,
    apply,
    auth,
    book,
    bookable_item,
    deliver,
    key,
    open_days,
    upstream_urls,
)

CHINA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+08:00$")


@pytest.fixture
async def client(make_client, services, sandbox_url) -> httpx.AsyncClient:
    await sync_once(make_settings(services, sandbox_url))  # hall and item names come from the mirror
    return await make_client(**upstream_urls(sandbox_url))


async def test_appointments_are_named_filtered_and_linked_forward(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=2)
    item = await bookable_item(db)
    hall = await db.fetchrow("SELECT name, address FROM bff.catalogue_halls WHERE id = $1", item["hall"])
    days = await open_days(client, who, item, 2)
    first = await book(client, who, days[0]["slots"][0]["slotId"])
    assert first["hallName"] == hall["name"] and first["hallAddress"] == hall["address"]
    assert first["itemName"], first
    assert CHINA_TIME.match(first["startsAt"]) and CHINA_TIME.match(first["endsAt"])
    moved = await client.post(
        f"/api/v1/appointments/{first['id']}/reschedule",
        json={"slotId": days[1]["slots"][1]["slotId"]},
        headers=auth(who, key()),
    )
    assert moved.status_code == 201, moved.text
    new = moved.json()
    old = (await client.get(f"/api/v1/appointments/{first['id']}", headers=auth(who))).json()
    assert old["status"] == "cancelled" and old["rescheduledTo"] == new["id"]
    assert new["rescheduledFrom"] == first["id"] and new["rescheduledTo"] is None
    booked = (await client.get("/api/v1/appointments", params={"status": "booked"}, headers=auth(who))).json()
    assert [a["id"] for a in booked["items"]] == [new["id"]]
    cancelled = (
        await client.get("/api/v1/appointments", params={"status": "cancelled"}, headers=auth(who))
    ).json()
    assert [a["id"] for a in cancelled["items"]] == [first["id"]]
    assert cancelled["items"][0]["rescheduledTo"] == new["id"]
    everything = (await client.get("/api/v1/appointments", headers=auth(who))).json()
    assert {a["id"] for a in everything["items"]} == {first["id"], new["id"]}
    wrong = await client.get("/api/v1/appointments", params={"status": "lost"}, headers=auth(who))
    assert wrong.status_code == 400 and wrong.json()["code"] == "validation_failed"


async def test_case_list_and_timeline_carry_clock_labels_and_china_time(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    case = await apply(client, who, await bookable_item(db))
    case_id, project_no = case["case"]["id"], case["case"]["projectNo"]
    assert CHINA_TIME.match(case["case"]["submittedAt"])
    for action, fields in (
        ("accept", {}),
        ("request_supplement", {"opinion": "请补充材料", "items": ["户口簿复印件"]}),
    ):
        event = await advance(sandbox, project_no, action, **fields)
        assert (await deliver(client, event)).status_code == 200
    # 补正: the clock is paused, the promised date and the days left stay visible.
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["countdown"]["paused"] is True and detail["countdown"]["promiseDate"]
    listed = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    mine = next(c for c in listed if c["id"] == case_id)
    assert mine["status"] == "awaiting_supplement" and mine["statusLabel"] == "待补正"
    assert mine["paused"] is True and mine["promiseDate"] == detail["countdown"]["promiseDate"]
    assert mine["remainingWorkingDays"] == detail["countdown"]["remainingWorkingDays"]
    supplement = next(e for e in detail["timeline"] if e["kind"] == "supplement_requested")
    assert "supplementId" in supplement["details"], supplement
    assert all(CHINA_TIME.match(e["at"]) for e in detail["timeline"])
    assert not [k for e in detail["timeline"] for k in (e.get("details") or {}) if "_" in k]
    answered = await client.post(
        f"/api/v1/cases/{case_id}/supplements",
        json={"supplementId": supplement["details"]["supplementId"], "answer": "已补充"},
        headers=auth(who, key()),
    )
    assert answered.status_code == 201, answered.text
    # Concluded: the result code carries its label, in the request's language.
    event = await advance(sandbox, project_no, "conclude", result_code="0")
    assert (await deliver(client, event)).status_code == 200
    zh = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    concluded = next(e for e in zh["timeline"] if e["kind"] == "concluded")
    assert concluded["details"]["result"] == "issued" and concluded["details"]["resultLabel"] == "出证办结"
    assert zh["case"]["resultLabel"] == "出证办结"
    en = (await client.get(f"/api/v1/cases/{case_id}", headers={**auth(who), "Accept-Language": "en"})).json()
    assert next(e for e in en["timeline"] if e["kind"] == "concluded")["details"]["resultLabel"] == (
        "Concluded, licence issued"
    )
    assert en["case"]["statusLabel"] == "Concluded"


def test_make_run_points_the_case_webhook_at_the_api() -> None:
    assert dev_notify_url(Settings(api_port=8123)) == "http://127.0.0.1:8123/api/v1/case-events"
    assert dev_notify_url(Settings(api_host="0.0.0.0")) == "http://127.0.0.1:8000/api/v1/case-events"


async def test_search_tells_the_truth_of_the_residents_region(client, db) -> None:
    """Issue 9 §5: an item online in one region and hall-only in another is shown as it is where
    the resident lives, with that implementation's department."""
    row = await db.fetchrow(
        """
        SELECT catalog_code, min(name) AS name FROM bff.catalogue_entries
        WHERE parent_code IS NULL AND status = 'active'
        GROUP BY catalog_code HAVING bool_or(online) AND NOT bool_and(online) LIMIT 1
        """
    )
    assert row is not None, "the seed has items online in some regions only"
    code = row["catalog_code"]
    places = await db.fetch(
        "SELECT region_code, online, department FROM bff.catalogue_entries "
        "WHERE catalog_code = $1 AND status = 'active' ORDER BY online, region_code",
        code,
    )
    hall_only = next(p for p in places if not p["online"])
    online = next(p for p in places if p["online"])
    for place, expected in ((hall_only, False), (online, True)):
        page = (
            await client.get(
                "/api/v1/items", params={"q": row["name"], "region": place["region_code"], "limit": 50}
            )
        ).json()
        hit = next(i for i in page["items"] if i["code"] == code)
        assert hit["online"] is expected, (place["region_code"], hit)
        assert hit["inRegion"]["online"] is expected
        assert hit["inRegion"]["regionCode"] == place["region_code"]
        assert hit["department"] == place["department"] == hit["inRegion"]["department"]
        assert isinstance(hit["inRegion"]["bookable"], bool)
    anywhere = (await client.get("/api/v1/items", params={"q": row["name"], "limit": 50})).json()
    hit = next(i for i in anywhere["items"] if i["code"] == code)
    assert hit["online"] is True and hit["inRegion"] is None


async def test_search_says_whether_the_residents_region_mails_the_result(client, db) -> None:
    """Issue 9 §5: an item mailed in one region and handed over at the hall only in another says so
    per region; the truth is read from each region's own guide, not from the search's columns."""
    rows = await db.fetch(
        """
        SELECT e.catalog_code, e.name, e.region_code,
               (convert_from(g.body, 'UTF8')::jsonb -> 'channels' ->> 'mailable')::boolean AS mailable
        FROM bff.catalogue_entries e
        JOIN bff.catalogue_guides g ON g.catalog_code = e.catalog_code
         AND g.region_code = e.region_code AND g.version = e.version
        WHERE e.parent_code IS NULL AND e.status = 'active' AND e.region_code <> '430000'
          AND e.catalog_code IN (
            SELECT catalog_code FROM bff.catalogue_entries
            WHERE parent_code IS NULL AND status = 'active' AND region_code <> '430000'
            GROUP BY catalog_code HAVING count(DISTINCT region_code) > 1)
        ORDER BY e.catalog_code, e.region_code
        """
    )
    by_code: dict[str, dict[bool, dict]] = {}
    for r in rows:
        by_code.setdefault(r["catalog_code"], {}).setdefault(r["mailable"], dict(r))
    code, pair = next((c, p) for c, p in by_code.items() if len(p) == 2)
    for expected in (True, False):
        place = pair[expected]
        page = (
            await client.get(
                "/api/v1/items", params={"q": place["name"], "region": place["region_code"], "limit": 50}
            )
        ).json()
        hit = next(i for i in page["items"] if i["code"] == code)
        assert hit["inRegion"]["regionCode"] == place["region_code"], hit
        assert hit["inRegion"]["mailable"] is expected, (place["region_code"], hit)


async def test_the_booking_calendar_says_which_days_are_bookable_and_how_full(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=2)
    item = await bookable_item(db)
    url = f"/api/v1/halls/{item['hall']}/calendar"
    calendar = (await client.get(url, params={"item": item["code"]}, headers=auth(who))).json()
    days = calendar["days"]
    assert len(days) == 16 and calendar["firstBookable"]
    assert [d["date"] for d in days] == sorted(d["date"] for d in days)
    assert any(not d["inWindow"] for d in days), "the window (10 working days) ends inside 16 days"
    assert all(0 <= d["fullness"] <= 1 and d["available"] <= d["capacity"] for d in days)
    assert all(d["bookable"] == (d["inWindow"] and d["open"] and d["available"] > 0) for d in days)
    first = calendar["firstBookable"]
    day_slots = (
        await client.get(
            f"/api/v1/halls/{item['hall']}/slots",
            params={"item": item["code"], "date": first},
            headers=auth(who),
        )
    ).json()
    before = next(d for d in days if d["date"] == first)
    assert before["available"] == sum(s["available"] for s in day_slots["slots"])
    await book(client, who, day_slots["slots"][0]["slotId"])
    after = (await client.get(url, params={"item": item["code"]}, headers=auth(who))).json()
    moved = next(d for d in after["days"] if d["date"] == first)
    assert moved["available"] == before["available"] - 1 and moved["fullness"] > before["fullness"]
    wrong = await client.get(url, params={"item": "no such/item"}, headers=auth(who))
    assert wrong.status_code in {400, 404, 422} and wrong.status_code != 500
