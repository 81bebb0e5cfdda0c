"""The mailing journey over real HTTP against a real BFF process: concluded -> mailing requested ->
the courier's signed callbacks (delivered by the sandbox to the process) -> delivered. The case list
shows delivering, then delivered; the timeline has the shipment and every tracking event in order."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.delivery_helpers import add_address, ensure_mirror, mailable_item
from tests.test_journey_helpers import advance, application, auth, key, serve_env

COURIER_LINE = ["created", "picked_up", "in_transit", "out_for_delivery", "delivered"]


@pytest.fixture
async def bff(services, sandbox_url) -> httpx.AsyncClient:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serve_env(
        services,
        sandbox_url,
        port,
        CASE_NOTIFY_URL=f"{url}/api/v1/case-events",
        COURIER_URL=f"{sandbox_url}/courier",
        COURIER_NOTIFY_URL=f"{url}/api/v1/deliveries/courier/notify",
    )
    await ensure_mirror(services, sandbox_url)  # region codes are checked against the mirror
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-delivery-journey")
    try:
        await asyncio.to_thread(wait_http, f"{url}/healthz", proc)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop_process(proc)


async def status_of(client: httpx.AsyncClient, who: dict, case_id: str) -> str:
    listed = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    return str({c["id"]: c["status"] for c in listed}[case_id])


async def wait_until(probe, expected, seconds: float = 15):  # type: ignore[no-untyped-def]
    value = None
    for _ in range(int(seconds / 0.1)):
        value = await probe()
        if value == expected:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"still {value!r}, expected {expected!r}")


async def test_concluded_case_is_mailed_tracked_and_delivered(bff, sandbox, db) -> None:
    who = await login_resident(bff, sandbox, channel="miniprogram", level=3)
    item = await mailable_item(db)
    applied = await bff.post(
        "/api/v1/cases", json=await application(bff, who, item), headers=auth(who, key())
    )
    assert applied.status_code == 201, applied.text
    case_id, project_no = applied.json()["case"]["id"], applied.json()["case"]["projectNo"]
    # The case system delivers its own webhooks to the process.
    await advance(sandbox, project_no, "accept")
    await advance(sandbox, project_no, "conclude", result_code="0")
    await wait_until(lambda: status_of(bff, who, case_id), "concluded")

    address = await add_address(bff, who)
    mailed = await bff.post(
        f"/api/v1/cases/{case_id}/delivery", json={"addressId": address["id"]}, headers=auth(who, key())
    )
    assert mailed.status_code == 201, mailed.text
    delivery = mailed.json()
    assert delivery["status"] == "created" and delivery["caseId"] == case_id
    assert await status_of(bff, who, case_id) == "delivering"

    waybill = delivery["waybillNo"]
    for expected in COURIER_LINE[1:]:
        moved = await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})
        assert moved.status_code == 201 and moved.json()["status"] == expected
        # The courier calls the process back; the resident sees each step.
        await wait_until(lambda: _status(bff, who, delivery["id"]), expected)
        if expected != "delivered":
            assert await status_of(bff, who, case_id) == "delivering"
    assert await status_of(bff, who, case_id) == "delivered"

    tracking = (await bff.get(f"/api/v1/deliveries/{delivery['id']}", headers=auth(who))).json()
    assert [e["status"] for e in tracking["events"]] == COURIER_LINE
    seqs = [e["seq"] for e in tracking["events"]]
    assert seqs == sorted(seqs) and all(e["place"] and e["at"] for e in tracking["events"])
    # Every later step came by a real, verified callback (none by the feed: no worker runs here).
    vias = await db.fetch(
        "SELECT e.status, e.via FROM bff.shipment_events e JOIN bff.shipments s ON s.id = e.shipment_id "
        "WHERE s.waybill_no = $1 ORDER BY e.seq",
        waybill,
    )
    assert [r["via"] for r in vias][1:] == ["callback"] * 4

    detail = (await bff.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["case"]["status"] == "delivered"
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[: kinds.index("delivery_requested")][-1] == "concluded"
    assert kinds[kinds.index("delivery_requested") :] == ["delivery_requested"] + ["tracking"] * 5
    steps = [e for e in detail["timeline"] if e["kind"] == "tracking"]
    assert [s["details"]["status"] for s in steps] == COURIER_LINE
    assert [s["title"] for s in steps][-1] == "已签收"
    assert [e["seq"] for e in detail["timeline"]] == list(range(1, len(kinds) + 1))
    english = (
        await bff.get(f"/api/v1/cases/{case_id}", headers={**auth(who), "Accept-Language": "en"})
    ).json()
    assert [e["title"] for e in english["timeline"] if e["kind"] == "tracking"][-1] == "Delivered"

    # One message per change, in the outbox, in order.
    told = await db.fetch(
        "SELECT payload ->> 'status' AS status FROM bff.outbox WHERE topic = 'delivery.changed' AND payload ->> 'deliveryId' = $1 ORDER BY id",
        delivery["id"],
    )
    assert [m["status"] for m in told] == COURIER_LINE

    # Delivered -> rated (DOMAIN.md): the rating follows the last tracking event on the timeline.
    assert detail["case"]["ratingDue"] is True
    indicators = dict.fromkeys(["整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"], 5)
    rated = await bff.post(
        f"/api/v1/cases/{case_id}/rating",
        json={"level": 5, "indicators": indicators},
        headers=auth(who, key()),
    )
    assert rated.status_code == 201, rated.text
    detail = (await bff.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["case"]["status"] == "rated" and detail["case"]["ratingDue"] is False
    assert [e["kind"] for e in detail["timeline"]][-2:] == ["tracking", "rated"]


async def _status(client: httpx.AsyncClient, who: dict, delivery_id: str) -> str:
    return str((await client.get(f"/api/v1/deliveries/{delivery_id}", headers=auth(who))).json()["status"])


async def test_kill_9_while_the_courier_answers_then_the_retry_makes_no_second_shipment(
    services, sandbox_url, sandbox, db
) -> None:
    """`kill -9` of the API after the courier made the shipment and before our commit: the key's
    lease and our `requesting` row stay behind. A new process, once the lease has run out (we end it
    in the table instead of waiting 30 s), answers the retry with the same key from the same one
    shipment at the courier."""
    from urllib.parse import urlsplit

    from tests.losing_relay import LosingRelay

    await ensure_mirror(services, sandbox_url)
    target = urlsplit(sandbox_url)
    relay = LosingRelay(
        str(target.hostname), int(target.port or 80), prefix=b"POST /courier/v1/shipments", hold=True
    )
    async with relay.running():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = serve_env(
            services,
            sandbox_url,
            port,
            CASE_NOTIFY_URL=f"{url}/api/v1/case-events",
            COURIER_URL=f"http://127.0.0.1:{relay.port}/courier",
        )
        proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-delivery-kill")
        try:
            await asyncio.to_thread(wait_http, f"{url}/healthz", proc)
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                who = await login_resident(client, sandbox, level=3)
                applied = await client.post(
                    "/api/v1/cases",
                    json=await application(client, who, await mailable_item(db)),
                    headers=auth(who, key()),
                )
                case_id, project_no = applied.json()["case"]["id"], applied.json()["case"]["projectNo"]
                await advance(sandbox, project_no, "accept")
                await advance(sandbox, project_no, "conclude", result_code="6")
                await wait_until(lambda: status_of(client, who, case_id), "concluded")
                address = await add_address(client, who)
                idem = key()
                body = {"addressId": address["id"]}
                pending = asyncio.create_task(
                    client.post(f"/api/v1/cases/{case_id}/delivery", json=body, headers=auth(who, idem))
                )
                await asyncio.wait_for(relay.answered.wait(), 10)
                proc.kill()  # SIGKILL: no clean-up of any kind
                proc.wait(10)
                with pytest.raises(httpx.TransportError):
                    await pending
        finally:
            stop_process(proc)

        row = await db.fetchrow("SELECT * FROM bff.shipments WHERE case_id = $1::uuid", case_id)
        assert (row["status"], row["waybill_no"]) == ("requesting", None)
        assert await db.fetchval("SELECT state FROM bff.idempotency_keys WHERE key = $1", idem) == "in_flight"
        await db.execute(
            "UPDATE bff.idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1", idem
        )

        relay.hold = False
        proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-delivery-kill-2")
        try:
            await asyncio.to_thread(wait_http, f"{url}/healthz", proc)
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                retried = await client.post(
                    f"/api/v1/cases/{case_id}/delivery", json=body, headers=auth(who, idem)
                )
                assert retried.status_code == 201, retried.text
                again = await client.post(
                    f"/api/v1/cases/{case_id}/delivery", json=body, headers=auth(who, idem)
                )
                assert again.content == retried.content and again.headers["idempotent-replayed"] == "true"
                assert await status_of(client, who, case_id) == "delivering"
        finally:
            stop_process(proc)
    at_courier = await db.fetch(
        "SELECT waybill_no FROM sandbox.courier_shipments WHERE project_no = $1", project_no
    )
    assert [r["waybill_no"] for r in at_courier] == [retried.json()["waybillNo"]]
    assert await db.fetchval("SELECT count(*) FROM bff.shipments WHERE case_id = $1::uuid", case_id) == 1
