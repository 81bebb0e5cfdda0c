"""Mailing a case's result: refused where it cannot be mailed, re-entrant under its key, the
courier's callbacks verified (forged/stale/tampered/duplicate change nothing) and applied once, and
a dropped callback caught by the reconciler reading the courier's feed with a look-back."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import make_settings
from tests.delivery_helpers import (
    add_address,
    courier_deliver,
    courier_signed,
    delivery_urls,
    ensure_mirror,
    mailable_item,
)
from tests.test_journey_helpers import advance, apply, auth, conclude, deliver, key
from tests.test_sandbox_courier import shipment as sandbox_shipment

NOTIFY = "/api/v1/deliveries/courier/notify"


@pytest.fixture
async def client(make_client, services, sandbox_url) -> httpx.AsyncClient:
    await ensure_mirror(services, sandbox_url)
    return await make_client(**delivery_urls(sandbox_url))


async def concluded_case(client, sandbox, db, who, *, mailable: bool = True) -> dict:
    case = await apply(client, who, await mailable_item(db, mailable=mailable))
    await conclude(client, sandbox, who, case)
    return case


async def mail(client, who, case: dict, address_id: str, idem: str | None = None) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case['case']['id']}/delivery",
        json={"addressId": address_id},
        headers=auth(who, idem or key()),
    )


async def status_of_case(db, case_id: str) -> str:
    return str(await db.fetchval("SELECT status FROM bff.cases WHERE id = $1::uuid", case_id))


async def changes(db, case_id: str) -> tuple:
    """Everything a courier event can change, for one case."""
    return (
        await db.fetchval("SELECT status FROM bff.cases WHERE id = $1::uuid", case_id),
        tuple(
            await db.fetch(
                "SELECT s.status, s.version FROM bff.shipments s WHERE s.case_id = $1::uuid ORDER BY created_at",
                case_id,
            )
        ),
        await db.fetchval(
            """
            SELECT count(*) FROM bff.shipment_events e JOIN bff.shipments s ON s.id = e.shipment_id
            WHERE s.case_id = $1::uuid
            """,
            case_id,
        ),
        await db.fetchval(
            "SELECT count(*) FROM bff.outbox WHERE topic = 'delivery.changed' AND payload ->> 'caseId' = $1",
            case_id,
        ),
    )


async def test_mailing_is_refused_where_there_is_nothing_to_mail_and_changes_nothing(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    other = await login_resident(client, sandbox, level=3)
    address = await add_address(client, who)
    not_mailable = await concluded_case(client, sandbox, db, who, mailable=False)
    in_progress = await apply(client, who, await mailable_item(db))
    await advance(sandbox, in_progress["case"]["projectNo"], "accept")  # no result yet
    returned = await apply(client, who, await mailable_item(db))
    for action, fields in (("accept", {}), ("conclude", {"result_code": "1"})):  # 退回: nothing issued
        assert (
            await deliver(client, await advance(sandbox, returned["case"]["projectNo"], action, **fields))
        ).status_code == 200
    mine = await concluded_case(client, sandbox, db, who)
    others_address = await add_address(client, other)

    refused = {
        "not mailable": (await mail(client, who, not_mailable, address["id"]), 422, "item_not_mailable"),
        "no result": (await mail(client, who, in_progress, address["id"]), 409, "no_result_to_mail"),
        "returned": (await mail(client, who, returned, address["id"]), 409, "no_result_to_mail"),
        "not my case": (await mail(client, other, mine, others_address["id"]), 404, "case_not_found"),
        "not my address": (await mail(client, who, mine, others_address["id"]), 404, "address_not_found"),
    }
    for why, (response, status, code) in refused.items():
        assert (response.status_code, response.json()["code"]) == (status, code), (why, response.text)
    project_nos = [c["case"]["projectNo"] for c in (not_mailable, in_progress, returned, mine)]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.shipments WHERE person_id = ANY($1)",
            [who["person_id"], other["person_id"]],
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.courier_shipments WHERE project_no = ANY($1)", project_nos
        )
        == 0
    )
    detail = (await client.get(f"/api/v1/cases/{mine['case']['id']}", headers=auth(who))).json()
    assert detail["case"]["status"] == "concluded"


async def test_request_is_replayed_under_its_key_and_one_shipment_per_case(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    address = await add_address(client, who)
    case = await concluded_case(client, sandbox, db, who)
    idem = key()
    first, *rest = await asyncio.gather(*(mail(client, who, case, address["id"], idem) for _ in range(6)))
    assert first.status_code in (201, 409)
    done = [r for r in (first, *rest) if r.status_code == 201]
    assert done and all(
        r.json()["code"] == "idempotency_in_progress" for r in (first, *rest) if r.status_code != 201
    )
    again = await mail(client, who, case, address["id"], idem)
    assert again.status_code == 201 and again.content == done[0].content
    assert again.headers["idempotent-replayed"] == "true" and again.headers["cache-control"] == "no-store"
    out = again.json()
    assert out["status"] == "created" and len(out["waybillNo"]) == 13 and out["carrier"] == "EMS"
    assert out["recipient"]["name"] == "王**" and "****" in out["recipient"]["phone"]
    assert "麓山南路" not in again.text and "王小明" not in again.text  # masked; the courier got it whole
    sent = await db.fetchval(
        "SELECT request -> 'recipient' ->> 'address' FROM sandbox.courier_shipments WHERE waybill_no = $1",
        out["waybillNo"],
    )
    assert sent == "岳麓区麓山南路932号湖南大学7栋301"
    raw = await db.fetchrow("SELECT * FROM bff.shipments WHERE id = $1::uuid", out["id"])
    assert "麓山南路".encode() not in bytes(raw["recipient_address_enc"])
    assert [e["status"] for e in out["events"]] == ["created"]  # tracking read right after creation
    other_key = await mail(client, who, case, address["id"])
    assert other_key.status_code == 409 and other_key.json()["code"] == "delivery_already_requested"
    assert (
        await db.fetchval("SELECT count(*) FROM bff.shipments WHERE case_id = $1::uuid", case["case"]["id"])
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.courier_shipments WHERE project_no = $1", case["case"]["projectNo"]
        )
        == 1
    )
    summary = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    assert {c["id"]: c["status"] for c in summary}[case["case"]["id"]] == "delivering"
    # Someone else cannot read it; I can, with no-store.
    other = await login_resident(client, sandbox, level=3)
    assert (await client.get(f"/api/v1/deliveries/{out['id']}", headers=auth(other))).json()[
        "code"
    ] == "delivery_not_found"
    mine = await client.get(f"/api/v1/deliveries/{out['id']}", headers=auth(who))
    assert mine.status_code == 200 and mine.headers["cache-control"] == "no-store"


async def test_forged_stale_tampered_and_duplicate_callbacks_change_nothing(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await concluded_case(client, sandbox, db, who)
    out = (await mail(client, who, case, (await add_address(client, who))["id"])).json()
    event = (
        await sandbox.post(f"/_control/courier/shipments/{out['waybillNo']}/advance", json={"deliver": False})
    ).json()
    assert event["status"] == "picked_up"
    before = await changes(db, case["case"]["id"])
    audited = await db.fetchval("SELECT count(*) FROM bff.audit_log WHERE action = 'courier.callback'")

    body, good = courier_signed(event)
    attempts = {
        "forged": courier_signed(event, secret="not-the-courier"),
        "stale": courier_signed(event, at=int(time.time()) - 3600),
        "future": courier_signed(event, at=int(time.time()) + 3600),
        "tampered": (body.replace(b"picked_up", b"delivered"), good),
        "other event id": courier_signed(event, event_id="CE" + "0" * 32),
        "unsigned": (body, {"Content-Type": "application/json"}),
        "bad signature form": (body, {**good, "X-Courier-Signature": good["X-Courier-Signature"][7:]}),
    }
    for why, (raw, headers) in attempts.items():
        response = await client.post(NOTIFY, content=raw, headers=headers)
        assert response.status_code == 401, (why, response.text)
        assert response.json()["code"] == "courier_callback_rejected"
    assert await changes(db, case["case"]["id"]) == before
    rejected = await db.fetchval("SELECT count(*) FROM bff.audit_log WHERE action = 'courier.callback'")
    assert rejected - audited == len(attempts)

    responses = await asyncio.gather(*(courier_deliver(client, event) for _ in range(20)))
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["applied"] + ["duplicate"] * 19
    after = await changes(db, case["case"]["id"])
    assert after[0] == "delivering" and after[1][0]["status"] == "picked_up"
    assert after[2] == before[2] + 1 and after[3] == before[3] + 1  # one event row, one message
    # Duplicates later still change nothing.
    assert (await courier_deliver(client, event)).json()["outcome"] == "duplicate"
    assert await changes(db, case["case"]["id"]) == after


async def test_a_dropped_callback_is_caught_by_the_reconciler_despite_a_cursor_ahead(
    client, sandbox, sandbox_url, services, db
) -> None:
    from bff.wiring import open_root

    who = await login_resident(client, sandbox, level=3)
    case = await concluded_case(client, sandbox, db, who)
    out = (await mail(client, who, case, (await add_address(client, who))["id"])).json()
    waybill = out["waybillNo"]
    # Two changes whose callbacks never arrive (deliver: false is the courier dropping them).
    dropped = [
        (await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={"deliver": False})).json()
        for _ in range(2)
    ]
    before = await changes(db, case["case"]["id"])
    assert before[1][0]["status"] == "created"
    settings = make_settings(services, sandbox_url, **delivery_urls(sandbox_url))
    # The cursor already went past them (as a feed whose numbers become visible out of order
    # could make it): the look-back still reads them, and nothing is applied twice.
    await db.execute(
        """
        INSERT INTO bff.sync_cursors (name, position) VALUES ('courier.changes', $1)
        ON CONFLICT (name) DO UPDATE SET position = greatest(bff.sync_cursors.position, $1)
        """,
        dropped[-1]["seq"] + 5,
    )
    async with open_root(settings) as root:
        job = {j.name: j for j in root.jobs}["delivery_reconcile"]
        assert await job.run() >= 2
        assert await root.delivery.reconcile() == 0
        # Small pages (smaller than the look-back): the cursor still moves page by page to the end.
        for _ in range(12):  # feed entries enough that a page of 4 from far back cannot reach the cursor
            made = await sandbox.post("/courier/v1/shipments", json=sandbox_shipment(None))
            assert made.status_code == 201
        last = (await sandbox.get(f"/courier/v1/shipments/{made.json()['waybill_no']}")).json()["events"][-1][
            "seq"
        ]
        await db.execute("UPDATE bff.sync_cursors SET position = $1 WHERE name = 'courier.changes'", last - 1)
        await root.delivery.reconcile(page_size=4, max_pages=50)
        assert (
            await db.fetchval("SELECT position FROM bff.sync_cursors WHERE name = 'courier.changes'") >= last
        )
    rows = await db.fetch(
        "SELECT event_id, via FROM bff.shipment_events WHERE event_id = ANY($1)",
        [e["event_id"] for e in dropped],
    )
    assert {r["event_id"]: r["via"] for r in rows} == {e["event_id"]: "feed" for e in dropped}
    after = await changes(db, case["case"]["id"])
    assert after[1][0]["status"] == "in_transit" and after[2] == before[2] + 2 and after[3] == before[3] + 2
    # The late callback, if it comes after all, is a duplicate.
    assert (await courier_deliver(client, dropped[0])).json()["outcome"] == "duplicate"
    tracking = (await client.get(f"/api/v1/deliveries/{out['id']}", headers=auth(who))).json()
    assert [e["status"] for e in tracking["events"]] == ["created", "picked_up", "in_transit"]


@pytest.mark.parametrize("caught_up_by", ["feed", "resolver", "retry"])
async def test_a_lost_courier_answer_makes_one_shipment_whichever_way_it_is_caught_up(
    make_client, services, sandbox, sandbox_url, db, caught_up_by
) -> None:
    """The courier made the shipment but its answer was lost (every attempt): the resident gets a
    503, our row waits in `requesting`. Either the courier's own event (feed) fills in the waybill,
    or the worker's resolver asks again (with the row's request id) once the row is old, or the
    resident's retry with the same key asks again; each ends in the same one shipment."""
    from urllib.parse import urlsplit

    from bff.wiring import open_root
    from tests.losing_relay import LosingRelay

    await ensure_mirror(services, sandbox_url)
    target = urlsplit(sandbox_url)
    relay = LosingRelay(
        str(target.hostname), int(target.port or 80), prefix=b"POST /courier/v1/shipments", lose=1000
    )
    async with relay.running():
        client = await make_client(
            **{**delivery_urls(sandbox_url), "courier_url": f"http://127.0.0.1:{relay.port}/courier"}
        )
        who = await login_resident(client, sandbox, level=3)
        case = await concluded_case(client, sandbox, db, who)
        address = await add_address(client, who)
        idem = key()
        lost = await mail(client, who, case, address["id"], idem)
        assert lost.status_code == 503, lost.text
        assert relay.lost >= 1  # the courier got (and de-duplicated) every attempt
        row = await db.fetchrow("SELECT * FROM bff.shipments WHERE case_id = $1::uuid", case["case"]["id"])
        assert row["status"] == "requesting" and row["waybill_no"] is None
        at_courier = await db.fetch(
            "SELECT waybill_no FROM sandbox.courier_shipments WHERE project_no = $1",
            case["case"]["projectNo"],
        )
        assert len(at_courier) == 1

        if caught_up_by == "feed":
            # The reconciler reads the courier's `created` event and recognises our waiting shipment.
            async with open_root(make_settings(services, sandbox_url, **delivery_urls(sandbox_url))) as root:
                assert await root.delivery.reconcile() >= 1
            row = await db.fetchrow("SELECT * FROM bff.shipments WHERE id = $1", row["id"])
            assert (row["status"], row["waybill_no"]) == ("created", at_courier[0]["waybill_no"])
            assert (
                await db.fetchval("SELECT status FROM bff.cases WHERE id = $1::uuid", case["case"]["id"])
                == "delivering"
            )

        if caught_up_by == "resolver":
            settings = make_settings(services, sandbox_url, **delivery_urls(sandbox_url))
            async with open_root(settings) as root:
                resolve = {j.name: j for j in root.jobs}["delivery_resolve_pending"]
                await resolve.run()  # too young: its own request may still be running
                assert (
                    await db.fetchval("SELECT status FROM bff.shipments WHERE id = $1", row["id"])
                    == "requesting"
                )
                await db.execute(
                    "UPDATE bff.shipments SET updated_at = now() - interval '2 minutes' WHERE id = $1",
                    row["id"],
                )
                assert await resolve.run() >= 1
            row = await db.fetchrow("SELECT * FROM bff.shipments WHERE id = $1", row["id"])
            assert (row["status"], row["waybill_no"]) == ("created", at_courier[0]["waybill_no"])
            assert await status_of_case(db, case["case"]["id"]) == "delivering"

        # The resident's retry with the same key: the same shipment; the courier still holds one.
        relay.lose = 0
        retried = await mail(client, who, case, address["id"], idem)
        assert retried.status_code == 201, retried.text
        assert (
            retried.json()["id"] == str(row["id"])
            and retried.json()["waybillNo"] == at_courier[0]["waybill_no"]
        )
        assert (
            await db.fetchval(
                "SELECT count(*) FROM sandbox.courier_shipments WHERE project_no = $1",
                case["case"]["projectNo"],
            )
            == 1
        )
        assert (
            await db.fetchval(
                "SELECT count(*) FROM bff.shipments WHERE case_id = $1::uuid", case["case"]["id"]
            )
            == 1
        )


async def test_a_failed_then_returned_parcel_puts_the_case_back_to_concluded_and_it_can_be_mailed_again(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await concluded_case(client, sandbox, db, who)
    address = await add_address(client, who)
    first = (await mail(client, who, case, address["id"])).json()
    base = f"/_control/courier/shipments/{first['waybillNo']}"
    events = [(await sandbox.post(f"{base}/advance", json={"deliver": False})).json() for _ in range(3)]
    events.append(
        (await sandbox.post(f"{base}/fail", json={"reason": "收件人不在", "deliver": False})).json()
    )
    events.append((await sandbox.post(f"{base}/return", json={"deliver": False})).json())
    # Delivered in reverse: the status still ends where the courier's last event put it.
    for event in reversed(events):
        assert (await courier_deliver(client, event)).json()["outcome"] == "applied"
    tracking = (await client.get(f"/api/v1/deliveries/{first['id']}", headers=auth(who))).json()
    assert tracking["status"] == "returned"
    assert [e["status"] for e in tracking["events"]] == [
        "created",
        "picked_up",
        "in_transit",
        "out_for_delivery",
        "failed",
        "returned",
    ]
    assert "收件人不在" in tracking["events"][4]["place"]
    assert await status_of_case(db, case["case"]["id"]) == "concluded"
    second = await mail(client, who, case, address["id"])
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first["id"] and await status_of_case(db, case["case"]["id"]) == "delivering"


async def test_concurrent_requests_with_different_keys_make_one_shipment(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    case = await concluded_case(client, sandbox, db, who)
    address = await add_address(client, who)
    responses = await asyncio.gather(*(mail(client, who, case, address["id"]) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"delivery_already_requested"}
    assert (
        await db.fetchval("SELECT count(*) FROM bff.shipments WHERE case_id = $1::uuid", case["case"]["id"])
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.courier_shipments WHERE project_no = $1", case["case"]["projectNo"]
        )
        == 1
    )
