"""Cases: application checked against the guide, uploads checked by content, the webhook applied
once whatever the order, the reconciler catching a lost webhook, and the outbox written once."""

from __future__ import annotations

import asyncio
import json
import random
import time

import asyncpg
import httpx
import pytest

from adapters.cases.client import CaseClient
from adapters.http import Policy, Upstream
from bff.cases.events import reconcile
from tests.auth_helpers import login_resident
from tests.test_journey_helpers import (
    PDF,
    PNG,
    advance,
    application,
    apply,
    auth,
    bookable_item,
    deliver,
    key,
    signed,
    upstream_urls,
)


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url), upload_max_bytes=64 * 1024)


async def snapshot(db) -> tuple[int, ...]:
    return tuple(
        [
            int(await db.fetchval(f"SELECT count(*) FROM bff.{t}"))
            for t in ("cases", "uploads", "case_events", "outbox", "idempotency_keys")
        ]
    )


async def test_timeline_from_webhooks_in_any_order_applied_once(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await apply(client, who, await bookable_item(db))
    case_id, project_no = case["case"]["id"], case["case"]["projectNo"]
    assert [e["kind"] for e in case["timeline"]] == ["submitted"]
    events = [
        await advance(sandbox, project_no, "accept", deliver=False, opinion="材料齐全，予以受理"),
        await advance(
            sandbox, project_no, "step", step="承办", deliver=False, officer="李科员", opinion="拟同意"
        ),
        await advance(sandbox, project_no, "step", step="审核", deliver=False, opinion="同意"),
    ]
    outbox_before = await db.fetchval(
        "SELECT count(*) FROM bff.outbox WHERE person_id = $1", who["person_id"]
    )
    deliveries = [event for event in events for _ in range(20)]
    random.shuffle(deliveries)
    responses = await asyncio.gather(*(deliver(client, event) for event in deliveries))
    assert {r.status_code for r in responses} == {200}
    outcomes = [r.json()["outcome"] for r in responses]
    assert outcomes.count("applied") == 3 and outcomes.count("duplicate") == 57
    rows = await db.fetch(
        "SELECT case_seq, type, via FROM bff.case_events WHERE case_id = $1 ORDER BY case_seq", case_id
    )
    assert [(r["case_seq"], r["type"]) for r in rows] == [
        (1, "submitted"),
        (2, "accepted"),
        (3, "step"),
        (4, "step"),
    ]
    outbox = await db.fetchval("SELECT count(*) FROM bff.outbox WHERE person_id = $1", who["person_id"])
    # One message per change at most; an older event arriving after a newer one adds no message.
    assert 1 <= outbox - outbox_before <= 3
    assert await db.fetchval("SELECT count(DISTINCT dedup_key) = count(*) FROM bff.outbox")
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["case"]["status"] == "in_progress"
    assert [e["kind"] for e in detail["timeline"]] == ["submitted", "accepted", "step", "step"]
    assert detail["timeline"][2]["officer"] == "李科员" and detail["timeline"][2]["opinion"] == "拟同意"
    assert detail["countdown"]["paused"] is False and detail["countdown"]["promiseDate"]


async def test_webhook_rejects_bad_signature_and_stale_timestamp(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await apply(client, who, await bookable_item(db))
    event = await advance(sandbox, case["case"]["projectNo"], "accept", deliver=False)
    body, headers = signed(event, secret="wrong-secret")
    bad = await client.post("/api/v1/case-events", content=body, headers=headers)
    assert bad.status_code == 401 and bad.json()["code"] == "webhook_rejected"
    body, headers = signed(event, at=int(time.time()) - 3600)
    stale = await client.post("/api/v1/case-events", content=body, headers=headers)
    assert stale.status_code == 401
    tampered_body, headers = signed(event)
    tampered = await client.post(
        "/api/v1/case-events", content=tampered_body.replace(b"03", b"08"), headers=headers
    )
    assert tampered.status_code == 401
    assert (
        await db.fetchval("SELECT count(*) FROM bff.case_events WHERE event_id = $1", event["event_id"]) == 0
    )


async def test_reconciler_catches_a_dropped_webhook(client, sandbox, sandbox_url, db, services) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await apply(client, who, await bookable_item(db))
    dropped = await advance(sandbox, case["case"]["projectNo"], "accept", deliver=False)
    detail = (await client.get(f"/api/v1/cases/{case['case']['id']}", headers=auth(who))).json()
    assert detail["case"]["status"] == "submitted"
    upstream = Upstream("cases", f"{sandbox_url}/cases", Policy())
    await upstream.start()
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
    try:
        from bff.platform.db import init_connection

        await pool.close()
        pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2, init=init_connection)
        assert await reconcile(pool, CaseClient(upstream)) >= 1
        assert await reconcile(pool, CaseClient(upstream)) == 0  # caught up: nothing twice
    finally:
        await pool.close()
        await upstream.close()
    row = await db.fetchrow("SELECT via FROM bff.case_events WHERE event_id = $1", dropped["event_id"])
    assert row["via"] == "feed"
    detail = (await client.get(f"/api/v1/cases/{case['case']['id']}", headers=auth(who))).json()
    assert detail["case"]["status"] == "accepted"
    # The late webhook, if it comes after all, changes nothing.
    assert (await deliver(client, dropped)).json()["outcome"] == "duplicate"


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b: b.update(unknown=1), 400, "validation_failed"),
        (lambda b: b["form"].update(contactPhone=13800138000), 400, "validation_failed"),
        (lambda b: b["form"].update(contactPhone="12345"), 400, "validation_failed"),
        (lambda b: b.update(regionCode="hunan"), 400, "validation_failed"),
        (lambda b: b["materials"].pop(0), 422, "materials_invalid"),
        (
            lambda b: b["materials"].append({"name": "不存在的材料", "uploadId": "x"}),
            422,
            "materials_invalid",
        ),
        (
            lambda b: b["materials"].__setitem__(
                0, {"name": b["materials"][0]["name"], "elicence": {"type": "1" * 20, "number": "x"}}
            ),
            422,
            "materials_invalid",
        ),
        (lambda b: b.update(itemCode="999999999999"), 404, "item_not_found"),
    ],
)
async def test_bad_applications_change_nothing(client, sandbox, db, mutate, status, code) -> None:
    who = await login_resident(client, sandbox, level=3)
    body = await application(client, who, await bookable_item(db))
    mutate(body)
    before = await snapshot(db)
    upstream_before = await db.fetchval("SELECT count(*) FROM sandbox.case_applications")
    response = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    after = await snapshot(db)
    # Refusals are kept as the key's answer (idempotency_keys may grow by one); nothing else moves.
    assert after[:4] == before[:4]
    assert await db.fetchval("SELECT count(*) FROM sandbox.case_applications") == upstream_before


async def test_item_not_online_is_refused(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db, online=False)
    body = await application(client, who, item)
    response = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert response.status_code == 422 and response.json()["code"] == "item_not_online"


@pytest.mark.parametrize(
    ("content", "media", "name", "status", "code"),
    [
        (b"MZ\x90\x00" + b"\x00" * 200, "application/pdf", "证明.pdf", 422, "upload_type_not_allowed"),
        (b"\x7fELF" + b"\x00" * 200, "application/pdf", "证明.pdf", 422, "upload_type_not_allowed"),
        (PNG, "application/pdf", "证明.pdf", 422, "upload_type_mismatch"),
        (PDF, "application/pdf", "证明.png", 422, "upload_type_mismatch"),
        (b"", "application/pdf", "空.pdf", 422, "upload_empty"),
        (PDF + b"0" * (64 * 1024), "application/pdf", "大.pdf", 413, "payload_too_large"),
    ],
)
async def test_bad_uploads_change_nothing(
    client, sandbox, db, content, media, name, status, code, tmp_path
) -> None:
    who = await login_resident(client, sandbox, level=3)
    before = await snapshot(db)
    response = await client.post(
        "/api/v1/uploads",
        params={"name": name},
        content=content,
        headers=auth(who, key(), **{"Content-Type": media}),
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert (await snapshot(db))[:4] == before[:4]


async def test_uploads_are_stored_outside_the_web_root_and_not_served(client, sandbox, db, services) -> None:
    who = await login_resident(client, sandbox, level=3)
    response = await client.post(
        "/api/v1/uploads",
        params={"name": "照片.png"},
        content=PNG,
        headers=auth(who, key(), **{"Content-Type": "image/png"}),
    )
    assert response.status_code == 201
    body = response.json()
    assert body["mediaType"] == "image/png" and body["sizeBytes"] == len(PNG)
    key_on_disk = await db.fetchval("SELECT storage_key FROM bff.uploads WHERE id = $1::uuid", body["id"])
    assert "/" not in key_on_disk and "." not in key_on_disk
    meta = await client.get(f"/api/v1/uploads/{body['id']}", headers=auth(who))
    assert meta.status_code == 200 and "content" not in meta.json()
    routes = {route.path for route in client.app.routes}  # type: ignore[attr-defined]
    assert not any(path.startswith("/static") or path.endswith("/content") for path in routes)


async def test_the_worker_job_reconciles(client, sandbox, sandbox_url, db, services, redis) -> None:
    from bff.wiring import open_root
    from tests.conftest import make_settings

    who = await login_resident(client, sandbox, level=3)
    case = await apply(client, who, await bookable_item(db))
    dropped = await advance(sandbox, case["case"]["projectNo"], "pre_accept", deliver=False)
    settings = make_settings(services, sandbox_url, **upstream_urls(sandbox_url))
    async with open_root(settings) as root:
        await {job.name: job for job in root.jobs}["cases_reconcile"].run()
    assert (
        await db.fetchval("SELECT via FROM bff.case_events WHERE event_id = $1", dropped["event_id"])
        == "feed"
    )
    detail = (await client.get(f"/api/v1/cases/{case['case']['id']}", headers=auth(who))).json()
    assert detail["case"]["status"] == "pre_accepted"


async def test_the_case_shows_which_licence_stood_in_for_each_material(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    body = await application(client, who, await bookable_item(db))
    licences = [m for m in body["materials"] if "elicence" in m]
    uploads = [m for m in body["materials"] if "uploadId" in m]
    assert licences, "the demo item should take at least one e-licence in place of a scan"
    applied = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert applied.status_code == 201, applied.text
    detail = await client.get(f"/api/v1/cases/{applied.json()['case']['id']}", headers=auth(who))
    shown = {m["name"]: m for m in detail.json()["materials"]}
    assert set(shown) == {m["name"] for m in body["materials"]}
    for given in licences:
        used = shown[given["name"]]
        number = given["elicence"]["number"]
        assert used["kind"] == "elicence" and used["elicenceType"] == given["elicence"]["type"]
        # Which licence, recognisably, but masked like an ID number.
        assert used["licenceNumber"] == number[:3] + "*" * (len(number) - 7) + number[-4:]
        assert number not in detail.text
    for given in uploads:
        assert shown[given["name"]] == {
            "name": given["name"],
            "kind": "upload",
            "elicenceType": None,
            "licenceNumber": None,
            "uploadId": given["uploadId"],
        }


async def test_a_form_without_contact_takes_it_from_the_verified_profile(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    body = await application(client, who, await bookable_item(db))
    body["form"] = {}  # what a renewal to-do's started form leaves to the BFF
    applied = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert applied.status_code == 201, applied.text
    project_no = applied.json()["case"]["projectNo"]
    sent = json.loads(
        await db.fetchval("SELECT form FROM sandbox.case_applications WHERE project_no = $1", project_no)
    )
    resident = who["resident"]
    assert sent["contactName"] == resident["name"] and sent["contactPhone"] == resident["phone_number"]
    # What the resident types still wins over the profile.
    typed = await application(client, who, await bookable_item(db))
    typed["form"] = {"contactName": "李四", "contactPhone": "13900139000"}
    second = await client.post("/api/v1/cases", json=typed, headers=auth(who, key()))
    assert second.status_code == 201, second.text
    form = json.loads(
        await db.fetchval(
            "SELECT form FROM sandbox.case_applications WHERE project_no = $1",
            second.json()["case"]["projectNo"],
        )
    )
    assert form["contactName"] == "李四" and form["contactPhone"] == "13900139000"


async def test_no_contact_in_the_form_nor_the_profile_is_refused_and_changes_nothing(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, channel="app", level=3)
    await db.execute("UPDATE bff.persons SET phone_enc = NULL WHERE id = $1::uuid", who["person_id"])
    body = await application(client, who, await bookable_item(db))
    body["form"] = {"contactName": "张三"}
    before = await snapshot(db)
    refused = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "form_invalid" and refused.json()["field"] == "form.contactPhone"
    # Only the key's record of the refusal (its answer from now on).
    assert await snapshot(db) == (*before[:4], before[4] + 1)
