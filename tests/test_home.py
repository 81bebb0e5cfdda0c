"""Issue 13 §5: home (我的待办) and its badges, over the app with real PostgreSQL, Redis and the
sandbox's case system, booking system, courier and e-licence library over HTTP.

What must be shown: home with every upstream up (a real to-do in each section); then each
upstream blackholed in turn and then all at once: each affected section `stale` or `unavailable`,
the answer within its budget + 50 ms, never a 5xx; ETag/304; the badges' counts.
"""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from bff.home import service as home_service
from bff.home.service import Budgets
from tests.auth_helpers import login_resident
from tests.delivery_helpers import add_address, delivery_urls, ensure_mirror, mailable_item
from tests.test_journey_helpers import (
    advance,
    apply,
    auth,
    book,
    bookable_item,
    deliver,
    first_slot,
    key,
    today_china,
)
from tests.test_sandbox_elicence import ID_CARD

# Every upstream a home may reach, directly or through the domains' services.
UPSTREAMS = ("cases", "booking", "courier", "elicence", "catalogue", "ratings", "wechatpay", "wechat", "idp")
BUDGET_S = max(
    Budgets().cases, Budgets().appointments, Budgets().parcels, Budgets().renewals, Budgets().messages
)


async def _client(make_client: Any, services: Any, sandbox_url: str, **extra: Any) -> httpx.AsyncClient:
    await ensure_mirror(services, sandbox_url)
    # Every home asks again (no fresh copy), so each blackhole is met by a real call.
    client = await make_client(**delivery_urls(sandbox_url), home_fresh_s=0, **extra)
    await client.app.state.root.catalogue_mirror.refresh(force=True)  # type: ignore[attr-defined]
    return client


async def _expiring_licence(sandbox: httpx.AsyncClient, who: dict[str, Any], days: int = 60) -> str:
    person = who["resident"]
    made = await sandbox.post(
        "/_control/elicence/licences",
        json={
            "type_code": ID_CARD,
            "holder_code": person["id_card_number"],
            "holder_name": person["name"],
            "issuer": "ga",
            "valid_to": (today_china() + timedelta(days=days)).isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    return str(made.json()["licence_id"])


async def _supplement_case(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any], db: asyncpg.Connection
) -> dict[str, Any]:
    case = await apply(client, who, await mailable_item(db))
    project_no = case["case"]["projectNo"]
    assert (await deliver(client, await advance(sandbox, project_no, "accept"))).status_code == 200
    asked = await advance(sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字")
    assert (await deliver(client, asked)).status_code == 200
    return {"id": case["case"]["id"], "supplement_id": asked["data"]["supplement_id"]}


async def _fee_case(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any], db: asyncpg.Connection
) -> str:
    case = await apply(client, who, await mailable_item(db))
    project_no = case["case"]["projectNo"]
    assert (await deliver(client, await advance(sandbox, project_no, "accept"))).status_code == 200
    issued = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee",
        json={
            "lines": [{"name": "工本费", "amount_fen": 1500}],
            "payable_by": (date.today() + timedelta(days=5)).isoformat(),
            "deliver": False,
        },
    )
    assert issued.status_code == 201, issued.text
    assert (await deliver(client, issued.json()["event"])).status_code == 200
    return str(case["case"]["id"])


async def _mailed_case(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any], db: asyncpg.Connection
) -> tuple[str, str]:
    """A concluded case (a rating due) whose result is in the post (a parcel under way)."""
    case = await apply(client, who, await mailable_item(db))
    case_id, project_no = case["case"]["id"], case["case"]["projectNo"]
    for action, fields in (
        ("accept", {}),
        ("step", {"step": "承办", "opinion": "材料齐全"}),
        ("conclude", {"result_code": "0"}),
    ):
        assert (
            await deliver(client, await advance(sandbox, project_no, action, **fields))
        ).status_code == 200
    address = await add_address(client, who)
    mailed = await client.post(
        f"/api/v1/cases/{case_id}/delivery", json={"addressId": address["id"]}, headers=auth(who, key())
    )
    assert mailed.status_code == 201, mailed.text
    return case_id, str(mailed.json()["id"])


async def _home(
    client: httpx.AsyncClient, who: dict[str, Any], **headers: str
) -> tuple[httpx.Response, float]:
    if "kiosk" in who:  # a kiosk signs every request
        headers = {**who["kiosk"].headers("GET", "/api/v1/home", b""), **headers}
    # The in-process suite's one heap holds hundreds of apps (no GC_FREEZE here): a full collection
    # during a home can stall the loop past the smallest section budget (0.25 s) and fail a section
    # that did nothing wrong. A served process freezes its start-up heap; here the collector waits.
    collecting = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        response = await client.get("/api/v1/home", headers=auth(who, **headers))
        return response, time.perf_counter() - started
    finally:
        if collecting:
            gc.enable()


def _sections(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    sections: dict[str, Any] = response.json()["sections"]
    return sections


async def test_home_shows_every_section_then_degrades_per_upstream_never_failing(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    client = await _client(make_client, services, sandbox_url)
    who = await login_resident(client, sandbox, channel="app", level=3)
    supplement = await _supplement_case(client, sandbox, who, db)
    fee_case = await _fee_case(client, sandbox, who, db)
    rated_case, parcel = await _mailed_case(client, sandbox, who, db)
    item = await bookable_item(db)
    appointment = await book(client, who, await first_slot(client, who, item))
    licence_id = await _expiring_licence(sandbox, who)

    # Every upstream up: a real to-do in each section, most urgent first.
    response, _ = await _home(client, who)
    sections = _sections(response)
    assert response.headers["cache-control"] == "no-store"
    assert who["resident"]["id_card_number"] not in response.text
    assert who["resident"]["phone_number"] not in response.text
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(
        (
            "bundles",
            "supplements",
            "fees",
            "appointments",
            "parcels",
            "renewals",
            "ratings",
            "hotline",
            "messages",
        ),
        "ok",
    )
    assert all(s["asOf"] for s in sections.values())
    assert [(i["caseId"], i["supplementId"]) for i in sections["supplements"]["items"]] == [
        (supplement["id"], supplement["supplement_id"])
    ]
    (fee,) = sections["fees"]["items"]
    assert (fee["caseId"], fee["totalFen"]) == (fee_case, 1500) and fee["payableBy"]
    assert [a["id"] for a in sections["appointments"]["items"]] == [appointment["id"]]
    assert [p["id"] for p in sections["parcels"]["items"]] == [parcel]
    (renewal,) = sections["renewals"]["items"]
    assert renewal["licence"]["id"] == licence_id and renewal["daysLeft"] == 60
    assert [r["caseId"] for r in sections["ratings"]["items"]] == [rated_case]
    inbox = await client.get("/api/v1/messages", headers=auth(who))
    assert sections["messages"]["total"] == inbox.json()["unreadCount"]
    order = response.json()["order"]
    assert order[:6] == ["supplements", "fees", "appointments", "parcels", "renewals", "ratings"]
    audited = await db.fetchval(
        "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND action = 'home.read'", who["person_id"]
    )
    assert audited == 1

    # ETag/304: the same to-dos (read again, at another time) are the same version.
    etag = response.headers["etag"]
    again = await client.get("/api/v1/home", headers=auth(who, **{"If-None-Match": etag}))
    assert again.status_code == 304 and again.headers["cache-control"] == "no-store"
    assert again.headers["etag"] == etag

    # Badges: the to-dos counted, one small answer.
    badges = await client.get("/api/v1/home/badges", headers=auth(who))
    assert badges.status_code == 200 and badges.headers["cache-control"] == "no-store"
    body = badges.json()
    assert body["todos"] == {"status": "ok", "count": 6}
    assert body["messages"] == {"status": "ok", "count": sections["messages"]["total"]}

    # Each upstream blackholed in turn, then all at once.
    for down in (*((u,) for u in UPSTREAMS), UPSTREAMS):
        for name in down:
            put = await sandbox.put(
                f"/_control/faults/{name}", json={"errorRate": 1.0, "errorKind": "timeout"}
            )
            assert put.status_code in (200, 201, 204), put.text
        try:
            response, took = await _home(client, who)
        finally:
            for name in down:
                await sandbox.delete(f"/_control/faults/{name}")
        assert took <= BUDGET_S + 0.05, (down, took)
        sections = _sections(response)
        # The case, appointment and parcel sections read our own mirrors (kept by webhooks and
        # feeds): a silent case system or courier does not take them away.
        for name in ("bundles", "supplements", "fees", "appointments", "parcels", "ratings", "messages"):
            assert sections[name]["status"] == "ok", (down, name, sections[name])
        renewals = sections["renewals"]
        if {"elicence", "booking"} & set(down):
            # A copy from a moment ago, whole, rather than the live one with its slot missing.
            assert renewals["status"] == "stale", (down, renewals)
        if renewals["status"] == "stale":
            assert renewals["asOf"] and renewals["items"][0]["licence"]["id"] == licence_id
        if "elicence" not in down and "booking" not in down and "catalogue" not in down:
            assert renewals["status"] == "ok", (down, renewals)

    # Back up: the renewals are read again.
    assert _sections((await _home(client, who))[0])["renewals"]["status"] == "ok"

    # Never nagging: a rating is asked for 30 days after the case's last change, then never again.
    await db.execute(
        "UPDATE bff.cases SET updated_at = now() - interval '31 days' WHERE id = $1::uuid", rated_case
    )
    ratings = _sections((await _home(client, who))[0])["ratings"]
    assert (ratings["status"], ratings["total"], ratings["items"]) == ("ok", 0, [])


async def test_a_section_with_no_copy_is_unavailable_and_badges_say_so(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient
) -> None:
    client = await _client(make_client, services, sandbox_url)
    who = await login_resident(client, sandbox, channel="app", level=3)
    await _expiring_licence(sandbox, who)
    await sandbox.put("/_control/faults/elicence", json={"errorRate": 1.0, "errorKind": "timeout"})
    try:
        response, took = await _home(client, who)
        badges = await client.get("/api/v1/home/badges", headers=auth(who))
    finally:
        await sandbox.delete("/_control/faults/elicence")
    assert took <= BUDGET_S + 0.05
    renewals = _sections(response)["renewals"]
    # Cut off by its budget: by our wait, or by the client's deadline it was given (which says so).
    assert renewals.pop("reason") in ("timeout", "failed")
    assert renewals == {"status": "unavailable", "asOf": None, "total": 0, "items": []}
    assert badges.status_code == 200
    assert badges.json()["todos"] == {"status": "stale", "count": 0}


async def test_home_is_shaped_per_channel_mode_and_level(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    client = await _client(make_client, services, sandbox_url)
    item = await bookable_item(db)

    # Mini-program at L2: the case sections ask for a step-up; the templates worth asking for next.
    mini = await login_resident(client, sandbox, channel="miniprogram", level=2)
    await book(client, mini, await first_slot(client, mini, item))
    response, _ = await _home(client, mini)
    sections = _sections(response)
    for name in ("bundles", "supplements", "fees", "parcels", "ratings"):
        assert sections[name]["status"] == "unavailable" and sections[name]["reason"] == "step_up_required"
    assert sections["appointments"]["total"] == 1
    body = response.json()
    assert body["channel"] == "miniprogram"
    assert body["subscribeTemplates"] == ["sxReminder-0006-OneTimeTemplateTomorrow0006"]

    # The app at L3 in elder mode: no secondary section, at most two items, the large-type hint.
    who = await login_resident(client, sandbox, channel="app", level=3)
    for _ in range(3):
        await _supplement_case(client, sandbox, who, db)
    standard = _sections((await _home(client, who))[0])
    assert standard["supplements"]["total"] == 3 and len(standard["supplements"]["items"]) == 3
    assert "subscribeTemplates" not in (await _home(client, who))[0].json() or (
        (await _home(client, who))[0].json()["subscribeTemplates"] is None
    )
    elder, _ = await _home(client, who, **{"X-UI-Mode": "elder"})
    shaped = _sections(elder)
    assert "ratings" not in shaped
    assert shaped["supplements"]["total"] == 3 and len(shaped["supplements"]["items"]) == 2
    assert elder.json()["display"]["mode"] == "elder"
    assert elder.headers["etag"] != (await _home(client, who))[0].headers["etag"]


async def test_sources_run_concurrently_each_cut_at_its_budget_and_kiosk_gets_few_items(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    client = await _client(make_client, services, sandbox_url)
    app = await login_resident(client, sandbox, channel="app", level=3)
    for _ in range(4):
        await _supplement_case(client, sandbox, app, db)
    await _expiring_licence(sandbox, app)
    # The same resident at a hall's kiosk (ID card and live face).
    who = await login_resident(client, sandbox, channel="kiosk", level=3, resident=app["resident"])
    first = _sections((await _home(client, who))[0])
    assert first["supplements"]["total"] == 4 and len(first["supplements"]["items"]) == 3  # the kiosk's few

    # Our own database holding the cases back (a long lock) and the licence library slow: were the
    # sources run one after another this would take 0.5 + 0.5 + 0.8 s; together it is the longest.
    slow = await sandbox.put("/_control/faults/elicence", json={"latencyMs": 2000})
    assert slow.status_code in (200, 201, 204)
    locker = await asyncpg.connect(services.database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE bff.cases IN ACCESS EXCLUSIVE MODE")
            response, took = await _home(client, who)
    finally:
        await locker.close()
        await sandbox.delete("/_control/faults/elicence")
    assert took <= BUDGET_S + 0.05, took
    sections = _sections(response)
    for name in ("bundles", "supplements", "fees", "parcels", "ratings", "renewals"):
        assert sections[name]["status"] == "stale", (name, sections[name])
    assert sections["supplements"]["asOf"] == first["supplements"]["asOf"]
    assert len(sections["supplements"]["items"]) == 3
    assert sections["appointments"]["status"] == "ok" and sections["messages"]["status"] == "ok"

    # The database free again: the cases are read afresh.
    after = _sections((await _home(client, who))[0])
    assert after["supplements"]["status"] == "ok"


async def test_a_homes_copies_are_written_when_they_change_not_on_every_refresh(
    make_client: Any,
    services: Any,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await _client(make_client, services, sandbox_url)
    who = await login_resident(client, sandbox, channel="app", level=3)
    copy = f"home:{{{who['person_id']}}}:appointments"
    assert _sections((await _home(client, who))[0])["appointments"]["total"] == 0
    assert await redis.ttl(copy) > 590  # written, kept HOME_STALE_S = 600 s
    # A mark: a write sets the TTL back to 600 s.
    await redis.expire(copy, 100)
    assert _sections((await _home(client, who))[0])["appointments"]["status"] == "ok"
    assert 0 < await redis.ttl(copy) <= 100  # the same to-dos: not written again

    item = await bookable_item(db)
    await book(client, who, await first_slot(client, who, item))
    assert _sections((await _home(client, who))[0])["appointments"]["total"] == 1
    assert await redis.ttl(copy) > 590  # changed: written at once
    kept = msgspec.json.decode(await redis.get(copy))
    assert (kept["status"], kept["total"]) == ("ok", 1)

    # Unchanged but older than KEEP_EVERY_S: written again, so a stale copy's asOf lags little.
    monkeypatch.setattr(home_service, "KEEP_EVERY_S", 0.5)
    await redis.expire(copy, 100)
    await asyncio.sleep(0.6)
    await _home(client, who)
    assert await redis.ttl(copy) > 590


async def test_homes_beyond_their_own_cap_get_a_fast_503_while_other_routes_are_served(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient
) -> None:
    client = await _client(make_client, services, sandbox_url, home_max_in_flight=2)
    who = await login_resident(client, sandbox, channel="app", level=3)
    await sandbox.put("/_control/faults/elicence", json={"latencyMs": 400})
    try:

        async def timed(path: str) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await client.get(path, headers=auth(who))
            return response, time.perf_counter() - started

        answers = await asyncio.gather(
            *(timed("/api/v1/home") for _ in range(3)),
            *(timed("/api/v1/home/badges") for _ in range(2)),
            timed("/api/v1/me"),
        )
    finally:
        await sandbox.delete("/_control/faults/elicence")
    homes, me = answers[:5], answers[5]
    assert me[0].status_code == 200, me[0].text  # not counted against the homes' cap
    served = [r for r, _ in homes if r.status_code == 200]
    shed = [(r, took) for r, took in homes if r.status_code == 503]
    assert (len(served), len(shed)) == (2, 3), [r.status_code for r, _ in homes]
    for response, took in shed:
        assert response.json()["code"] == "overloaded" and response.headers["retry-after"] == "1"
        assert took < 0.3  # refused at once, not after the library's 400 ms
    # The cap counts what is in flight: once they are answered, homes are served again.
    assert (await client.get("/api/v1/home", headers=auth(who))).status_code == 200
