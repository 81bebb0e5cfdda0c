"""Issue 13 §2-3: the e-licence wallet, 亮证 and the counter's check, and "who used my data", over
the app with real PostgreSQL, Redis and the e-licence library sandbox over HTTP.

What must be shown: a licence shown, checked by a counter, the check repeated (refused), expired
(refused) and forged (refused); the check appears in the resident's data-access log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from bff.licences.service import USAGE_BUDGET_S
from tests.auth_helpers import login_resident, staff_headers
from tests.delivery_helpers import ensure_mirror
from tests.test_journey_helpers import auth, key, today_china, upstream_urls
from tests.test_sandbox_elicence import DEPT, DRIVING, ID_CARD

SOCIAL = "11100000000000000040"

COUNTER = {"departmentCode": DEPT["department_code"], "departmentName": DEPT["department_name"]}


async def resident_with_licences(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, *, level: int = 3
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A resident logged in on the app, holding an ID card (long-term) and a driving licence."""
    who = await login_resident(client, sandbox, channel="app", level=level)
    person = who["resident"]
    made = {}
    for name, extra in (
        ("id", {"type_code": ID_CARD, "issuer": "ga"}),
        ("driving", {"type_code": DRIVING, "issuer": "jj", "valid_to": "2032-06-30", "trust_grade": "B"}),
    ):
        body = {"holder_code": person["id_card_number"], "holder_name": person["name"], **extra}
        response = await sandbox.post("/_control/elicence/licences", json=body)
        assert response.status_code == 201, response.text
        made[name] = response.json()
    return who, made


async def show(client: httpx.AsyncClient, who: dict[str, Any], licence_id: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/licences/{licence_id}/show", headers=auth(who, key()))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def check(
    client: httpx.AsyncClient, payload: str, idem: str | None = None, **extra: Any
) -> httpx.Response:
    headers = {**staff_headers(client), "Idempotency-Key": idem or key()}
    body = {"payload": payload, "purpose": "办理业务核验身份", **COUNTER, **extra}
    return await client.post("/api/v1/staff/licence-checks", json=body, headers=headers)


async def test_wallet_lists_masked_licences_with_grade_validity_and_watermark(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who, made = await resident_with_licences(client, sandbox, level=2)
    id_number = who["resident"]["id_card_number"]
    listed = await client.get("/api/v1/licences", headers=auth(who))
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "no-store"
    assert id_number not in listed.text and who["resident"]["name"] not in listed.text
    items = {i["typeCode"]: i for i in listed.json()["items"]}
    card, driving = items[ID_CARD], items[DRIVING]
    assert card["number"] == id_number[:3] + "*" * 11 + id_number[-4:]
    assert card["longTerm"] is True and card["validTo"] is None and card["status"] == "valid"
    assert (driving["trustGrade"], driving["validTo"], driving["longTerm"]) == ("B", "2032-06-30", False)
    assert driving["trustGradeText"] == "已在窗口与原件核对"

    detail = await client.get(f"/api/v1/licences/{made['driving']['licence_id']}", headers=auth(who))
    assert detail.status_code == 200 and detail.headers["cache-control"] == "no-store"
    text = detail.json()["watermarkText"]
    assert text.startswith(
        f"此件由{made['driving']['issuer_name']}提供，仅供办理政务服务事项时使用，有效期至"
    )
    # Personal-data reads are audited like the other personal routes.
    actions = await db.fetch(
        "SELECT action, result FROM bff.audit_log WHERE subject = $1 ORDER BY seq", who["person_id"]
    )
    assert {("licence.list", "masked"), ("licence.read", "masked")} <= {tuple(a) for a in actions}

    # Another resident's licence is answered like a missing one, and the attempt is audited.
    other, _ = await resident_with_licences(client, sandbox, level=2)
    stranger = await client.get(f"/api/v1/licences/{made['driving']['licence_id']}", headers=auth(other))
    assert stranger.status_code == 404 and stranger.json()["code"] == "licence_not_found"
    missing = await client.get("/api/v1/licences/EL0000000000000000", headers=auth(other))
    assert missing.status_code == 404 and missing.json()["code"] == "licence_not_found"
    denied = await db.fetchval(
        "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND result = 'denied_not_owner'",
        other["person_id"],
    )
    assert denied == 1


async def test_shown_licence_checked_once_then_repeated_expired_and_forged_refused(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who, made = await resident_with_licences(client, sandbox)
    shown = await show(client, who, made["id"]["licence_id"])
    assert shown["payload"].startswith("SXL1.") and shown["ttlSeconds"] == 120
    assert who["resident"]["id_card_number"] not in json.dumps(shown)

    idem = key()
    first = await check(client, shown["payload"], idem)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    verified = first.json()
    assert verified["result"] == "verified" and verified["departmentName"] == DEPT["department_name"]
    assert verified["licence"]["id"] == made["id"]["licence_id"]
    assert who["resident"]["id_card_number"] not in first.text
    # The counter's retry after a lost answer (same key) is the same verification, not "used".
    replay = await check(client, shown["payload"], idem)
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content

    repeated = await check(client, shown["payload"])
    assert repeated.status_code == 409 and repeated.json()["code"] == "licence_show_used"

    # Expired: a show whose time ran out (the library's code expires with it).
    late = await show(client, who, made["driving"]["licence_id"])
    await db.execute(
        "UPDATE bff.licence_shows SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(late["showId"]),
    )
    expired = await check(client, late["payload"])
    assert expired.status_code == 410 and expired.json()["code"] == "licence_show_expired"

    # Forged: an altered claim, a payload signed with another key, and plain junk.
    fresh = await show(client, who, made["driving"]["licence_id"])
    prefix, body, mac = fresh["payload"].split(".")
    claim = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claim[1] += 3600  # live longer
    longer = base64.urlsafe_b64encode(json.dumps(claim).encode()).decode().rstrip("=")
    for forged in (
        f"{prefix}.{longer}.{mac}",
        f"{prefix}.{body}.{'A' * len(mac)}",
        "SXL1.x.y",
        "SXL1.x.签名",
        "hello",
    ):
        refused = await check(client, forged)
        assert refused.status_code == 422 and refused.json()["code"] == "licence_show_invalid", forged
    # The untouched payload still works: a forgery does not use it up.
    assert (await check(client, fresh["payload"])).status_code == 200

    checks = await db.fetch(
        "SELECT result, refusal, usage_id IS NOT NULL AS at_library FROM bff.licence_checks "
        "WHERE person_id = $1 ORDER BY at",
        who["person_id"],
    )
    assert [tuple(c) for c in checks] == [
        ("verified", None, True),
        ("refused", "licence_show_used", False),
        ("refused", "licence_show_expired", False),
        ("verified", None, True),
    ]
    staff_audit = await db.fetchval(
        "SELECT count(*) FROM bff.audit_log WHERE subject = 'staff:test' AND action = 'licence.check' "
        "AND object = $1",
        f"licence_show:{shown['showId']}",
    )
    assert staff_audit == 2  # the accepted check and the repeated one (a replay is not a new check)
    shows = await db.fetchval(
        "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND action = 'licence.show'", who["person_id"]
    )
    assert shows == 3


async def test_a_code_the_library_let_expire_is_refused_as_expired_and_shown_as_its_use(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Our row still live, the library's code gone (its clock is the one that counts there): the
    library refuses, we answer expired, and its refused use is in the resident's log."""
    who, made = await resident_with_licences(client, sandbox)
    shown = await show(client, who, made["id"]["licence_id"])
    code = await db.fetchval(
        "SELECT auth_code FROM bff.licence_shows WHERE id = $1", uuid.UUID(shown["showId"])
    )
    assert (await sandbox.post(f"/_control/elicence/auth-codes/{code}/expire")).status_code == 201
    refused = await check(client, shown["payload"])
    assert refused.status_code == 410 and refused.json()["code"] == "licence_show_expired"
    row = await db.fetchrow(
        "SELECT refusal, usage_id FROM bff.licence_checks WHERE show_id = $1", uuid.UUID(shown["showId"])
    )
    assert row["refusal"] == "licence_show_expired" and row["usage_id"] is not None
    items = (await client.get("/api/v1/me/data-access", headers=auth(who))).json()["items"]
    library = [(i["action"], i["result"]) for i in items if i["source"] == "elicence_library"]
    assert library == [("verify", "refused")]
    assert not [i for i in items if i["source"] == "counter"]  # the library's own record, once


async def test_one_payload_checked_at_once_on_two_replicas_is_accepted_once(
    make_client: Any, sandbox: httpx.AsyncClient
) -> None:
    one, two = await make_client(), await make_client()
    who, made = await resident_with_licences(one, sandbox)
    shown = await show(one, who, made["id"]["licence_id"])
    answers = await asyncio.gather(*(check(c, shown["payload"]) for c in (one, two, one, two, one, two)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409, 409, 409, 409, 409], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"licence_show_used"}


async def test_the_counter_route_is_staff_only_and_showing_needs_level_3(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who, made = await resident_with_licences(client, sandbox)
    shown = await show(client, who, made["id"]["licence_id"])
    body = {"payload": shown["payload"], "purpose": "核验", **COUNTER}
    as_resident = await client.post("/api/v1/staff/licence-checks", json=body, headers=auth(who, key()))
    assert as_resident.status_code == 403 and as_resident.json()["code"] == "staff_only"
    low, low_made = await resident_with_licences(client, sandbox, level=2)
    refused = await client.post(
        f"/api/v1/licences/{low_made['id']['licence_id']}/show", headers=auth(low, key())
    )
    assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"
    # A revoked licence cannot be shown.
    await sandbox.post(f"/_control/elicence/licences/{made['driving']['licence_id']}/revoke", json={})
    revoked = await client.post(
        f"/api/v1/licences/{made['driving']['licence_id']}/show", headers=auth(who, key())
    )
    assert revoked.status_code == 409 and revoked.json()["code"] == "licence_not_valid"


async def test_the_check_appears_in_my_data_access_log_newest_first_and_paged(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who, made = await resident_with_licences(client, sandbox)
    await client.get("/api/v1/licences", headers=auth(who))
    shown = await show(client, who, made["id"]["licence_id"])
    assert (await check(client, shown["payload"])).status_code == 200
    assert (await check(client, shown["payload"])).status_code == 409

    page = await client.get("/api/v1/me/data-access", headers=auth(who))
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    body = page.json()
    assert body["licenceLibrary"]["status"] == "ok"
    items = body["items"]
    ats = [i["at"] for i in items]
    assert ats == sorted(ats, reverse=True)
    library = [i for i in items if i["source"] == "elicence_library"]
    assert len(library) == 1, items  # the check, once (mirrored at check time and read from the feed)
    (used,) = library
    assert (used["action"], used["result"], used["actor"]) == ("verify", "verified", "department")
    assert used["departmentName"] == DEPT["department_name"] and used["why"] == "办理业务核验身份"
    assert used["channel"] == "window" and used["what"] == "核验电子证照：居民身份证"
    refused = [i for i in items if i["source"] == "counter"]
    assert [(r["result"], r["departmentName"]) for r in refused] == [
        ("licence_show_used", DEPT["department_name"])
    ]
    mine = [i["action"] for i in items if i["source"] == "bff"]
    assert "licence.show" in mine and "licence.list" in mine
    assert all(i["actor"] == "self" for i in items if i["source"] == "bff")

    # Paged two at a time: the same rows, in the same order, none twice.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/me/data-access", params=params, headers=auth(who))
        assert response.status_code == 200, response.text
        seen += [i["id"] for i in response.json()["items"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    # The walk sees the first read of this log (audited after it answered), then exactly that page.
    assert seen[1:] == [i["id"] for i in items]
    english = await client.get("/api/v1/me/data-access", headers={**auth(who), "Accept-Language": "en"})
    assert "Checked a licence: 居民身份证" in [i["what"] for i in english.json()["items"]]
    bad = await client.get("/api/v1/me/data-access", params={"cursor": "forged"}, headers=auth(who))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"


async def test_data_access_is_served_stale_while_the_library_is_down(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who, made = await resident_with_licences(client, sandbox)
    shown = await show(client, who, made["id"]["licence_id"])
    assert (await check(client, shown["payload"])).status_code == 200
    assert (await client.get("/api/v1/me/data-access", headers=auth(who))).json()["licenceLibrary"][
        "status"
    ] == "ok"
    await sandbox.put("/_control/faults/elicence", json={"errorRate": 1.0, "errorKind": "503"})
    down = await client.get("/api/v1/me/data-access", headers=auth(who))
    assert down.status_code == 200, down.text
    body = down.json()
    assert body["licenceLibrary"]["status"] == "stale" and body["licenceLibrary"]["asOf"]
    assert [i["action"] for i in body["items"] if i["source"] == "elicence_library"] == ["verify"]
    # Slow rather than down: the page waits for the library at most its budget.
    await sandbox.put("/_control/faults/elicence", json={"latencyMs": 3000})
    started = time.monotonic()
    slow = await client.get("/api/v1/me/data-access", headers=auth(who))
    assert slow.status_code == 200 and slow.json()["licenceLibrary"]["status"] == "stale"
    assert time.monotonic() - started < USAGE_BUDGET_S + 0.5
    await sandbox.put("/_control/faults/elicence", json={"errorRate": 1.0, "errorKind": "503"})
    # The wallet itself needs the library: a 503 problem, never a 500.
    wallet = await client.get("/api/v1/licences", headers=auth(who))
    assert wallet.status_code == 503 and wallet.json()["code"] == "upstream_unavailable"


async def test_a_licence_near_its_end_is_told_once_per_threshold(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """90, 30 and 7 days before the end: one outbox message each, never twice; a long-term
    licence or one further out is not told; a renewed licence (a new end date) starts over."""
    who, made = await resident_with_licences(client, sandbox)
    today = today_china()
    holder = who["resident"]
    near = await sandbox.post(
        "/_control/elicence/licences",
        json={
            "type_code": SOCIAL,
            "holder_code": holder["id_card_number"],
            "holder_name": holder["name"],
            "issuer": "rs",
            "valid_to": (today + timedelta(days=60)).isoformat(),
        },
    )
    assert near.status_code == 201, near.text
    licence_id = near.json()["licence_id"]
    service = client.app.state.root.licences  # type: ignore[attr-defined]

    async def told() -> list[tuple[str, int]]:
        rows = await db.fetch(
            "SELECT dedup_key, (payload ->> 'threshold')::int AS threshold FROM bff.outbox "
            "WHERE person_id = $1 AND topic = 'licence.expiring' ORDER BY id",
            who["person_id"],
        )
        return [(r["dedup_key"].split(":")[1], r["threshold"]) for r in rows]

    await service.remind_expiring(today=today)
    assert await told() == [(licence_id, 90)]  # the driving licence (2032) and the ID card are far off
    await service.remind_expiring(today=today)
    assert await told() == [(licence_id, 90)]  # once
    await service.remind_expiring(today=today + timedelta(days=31))  # 29 days left
    await service.remind_expiring(today=today + timedelta(days=32))
    assert await told() == [(licence_id, 90), (licence_id, 30)]
    await service.remind_expiring(today=today + timedelta(days=55))  # 5 days left
    await service.remind_expiring(today=today + timedelta(days=56))
    assert await told() == [(licence_id, 90), (licence_id, 30), (licence_id, 7)]
    await service.remind_expiring(today=today + timedelta(days=61))  # ended: nothing more
    assert len(await told()) == 3
    # Renewed: a new end date 60 days after that day is told afresh.
    renewed = today + timedelta(days=121)
    await db.execute(
        "UPDATE sandbox.elicence_licences SET valid_to = $2 WHERE licence_id = $1", licence_id, renewed
    )
    await service.remind_expiring(today=today + timedelta(days=61))
    assert await told() == [(licence_id, 90), (licence_id, 30), (licence_id, 7), (licence_id, 90)]
    payload = await db.fetchval(
        "SELECT payload FROM bff.outbox WHERE person_id = $1 AND topic = 'licence.expiring' ORDER BY id LIMIT 1",
        who["person_id"],
    )
    body = json.loads(payload) if isinstance(payload, str) else payload
    assert body == {
        "licenceId": licence_id,
        "typeName": "社会保障卡",
        "validTo": (today + timedelta(days=60)).isoformat(),
        "daysLeft": 60,
        "threshold": 90,
    }
    assert holder["id_card_number"] not in json.dumps(body, ensure_ascii=False)
    assert made["driving"]["licence_id"] not in {k for k, _ in await told()}


async def test_a_licence_60_days_from_its_end_is_a_renewal_todo_with_a_real_free_slot(
    make_client: Any, sandbox: httpx.AsyncClient, services: Any, sandbox_url: str
) -> None:
    await ensure_mirror(services, sandbox_url)
    client = await make_client(**upstream_urls(sandbox_url))
    await client.app.state.root.catalogue_mirror.refresh(force=True)
    who = await login_resident(client, sandbox, channel="app", level=3)
    person = who["resident"]
    today = today_china()
    for type_code, issuer, days in ((ID_CARD, "ga", 60), (DRIVING, "jj", 400)):
        made = await sandbox.post(
            "/_control/elicence/licences",
            json={
                "type_code": type_code,
                "holder_code": person["id_card_number"],
                "holder_name": person["name"],
                "issuer": issuer,
                "valid_to": (today + timedelta(days=days)).isoformat(),
            },
        )
        assert made.status_code == 201, made.text
        if type_code == ID_CARD:
            licence_id = made.json()["licence_id"]
    response = await client.get(
        "/api/v1/me/licence-renewals", params={"near": "28.19,112.94"}, headers=auth(who)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert person["id_card_number"] not in response.text and person["phone_number"] not in response.text
    (todo,) = response.json()["items"]  # the driving licence is 400 days off
    assert todo["licence"]["id"] == licence_id and todo["daysLeft"] == 60
    assert todo["status"] == "ok", json.dumps(todo, ensure_ascii=False)
    assert todo["item"]["name"] == "居民身份证换领"
    form = todo["form"]
    assert form["itemCode"] == todo["item"]["code"] and form["contactName"].startswith(person["name"][0])
    assert form["contactPhone"] == person["phone_number"][:3] + "****" + person["phone_number"][-4:]
    assert todo["hall"]["distanceKm"] is not None
    # The slot is real: the booking system holds it for the resident.
    held = await client.post(
        "/api/v1/appointments/holds", json={"slotId": todo["slot"]["slotId"]}, headers=auth(who, key())
    )
    assert held.status_code == 201, held.text
