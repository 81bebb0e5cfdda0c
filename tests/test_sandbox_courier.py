"""The courier sandbox over real HTTP: idempotent shipments, tracking in order, signed callbacks to a
real receiver, dropped callbacks, and a changes feed that a late commit cannot slip past."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import free_port

SECRET = b"sandbox-courier-secret"


@dataclass
class Callbacks:
    url: str
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait(self, count: int, seconds: float = 5) -> None:
        deadline = time.monotonic() + seconds
        while len(self.got) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    port = free_port()
    rec = Callbacks(f"http://127.0.0.1:{port}/courier")

    async def handle(request: web.Request) -> web.Response:
        rec.got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/courier", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


def shipment(notify_url: str | None, request_id: str | None = None) -> dict[str, Any]:
    return {
        "request_id": request_id or "SH" + secrets.token_hex(8),
        "project_no": "4300002026120100000001",
        "sender": {"hall_id": "H430100001", "hall_name": "长沙市政务服务中心"},
        "recipient": {
            "name": "张三",
            "phone": "13800138000",
            "address": "岳麓区麓山南路 1 号",
            "region_code": "430104",
        },
        "notify_url": notify_url,
    }


def verified(headers: dict[str, str], body: bytes) -> bool:
    expected = hmac.new(
        SECRET, headers["X-Courier-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers["X-Courier-Signature"], "sha256=" + expected)


async def test_shipment_lifecycle_with_signed_callbacks(
    sandbox: httpx.AsyncClient, callbacks: Callbacks
) -> None:
    body = shipment(callbacks.url)
    created = await sandbox.post("/courier/v1/shipments", json=body)
    assert created.status_code == 201, created.text
    waybill = created.json()["waybill_no"]
    assert created.json()["status"] == "created" and len(waybill) == 13
    again = await sandbox.post("/courier/v1/shipments", json=body)
    assert again.json()["waybill_no"] == waybill
    reused = await sandbox.post("/courier/v1/shipments", json={**body, "project_no": "other"})
    assert reused.status_code == 409
    bad = await sandbox.post(
        "/courier/v1/shipments", json={**shipment(None), "recipient": {**body["recipient"], "phone": "123"}}
    )
    assert bad.status_code == 422

    for _ in range(4):  # picked_up, in_transit, out_for_delivery, delivered
        moved = await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})
        assert moved.status_code == 201, moved.text
    assert (await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})).status_code == 409
    tracking = (await sandbox.get(f"/courier/v1/shipments/{waybill}")).json()
    statuses = ["created", "picked_up", "in_transit", "out_for_delivery", "delivered"]
    assert tracking["status"] == "delivered"
    assert [e["status"] for e in tracking["events"]] == statuses
    assert all(e["place"] and e["at"] for e in tracking["events"])
    assert tracking["recipient"]["phone"] == "138****8000"
    seqs = [e["seq"] for e in tracking["events"]]
    assert seqs == sorted(seqs)

    await callbacks.wait(5)
    assert len(callbacks.got) == 5
    assert all(verified(h, b) for h, b in callbacks.got)
    received = sorted((json.loads(b) for _, b in callbacks.got), key=lambda e: e["seq"])
    assert [e["status"] for e in received] == statuses
    assert {h["X-Courier-Event-Id"] for h, _ in callbacks.got} == {e["event_id"] for e in tracking["events"]}
    headers, raw = callbacks.got[0]
    assert not verified({**headers, "X-Courier-Timestamp": str(int(headers["X-Courier-Timestamp"]) + 1)}, raw)


async def test_fail_return_and_dropped_callbacks(sandbox: httpx.AsyncClient, callbacks: Callbacks) -> None:
    waybill = (await sandbox.post("/courier/v1/shipments", json=shipment(callbacks.url))).json()["waybill_no"]
    for _ in range(3):
        await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})
    await callbacks.wait(4)
    await sandbox.put("/_control/courier/config", json={"drop_callbacks": True})
    try:
        failed = await sandbox.post(
            f"/_control/courier/shipments/{waybill}/fail", json={"reason": "收件人不在"}
        )
        assert failed.status_code == 201 and "收件人不在" in failed.json()["place"]
        returned = await sandbox.post(f"/_control/courier/shipments/{waybill}/return", json={})
        assert returned.status_code == 201
        await asyncio.sleep(0.3)
        assert len(callbacks.got) == 4  # the two later changes were never called back
        attempts = (await sandbox.get(f"/_control/courier/deliveries/{returned.json()['event_id']}")).json()
        assert attempts["attempts"] == [{"attempt": 1, "outcome": "dropped"}]
    finally:
        await sandbox.put("/_control/courier/config", json={"drop_callbacks": False})
    # ...but the feed and the tracking query still have them (what a reconciler would read).
    feed = (await sandbox.get("/courier/v1/changes", params={"since": failed.json()["seq"] - 1})).json()
    assert [e["status"] for e in feed["events"] if e["waybill_no"] == waybill] == ["failed", "returned"]
    assert (await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})).status_code == 409


async def test_changes_feed_cannot_skip_a_late_commit(sandbox: httpx.AsyncClient) -> None:
    first = (await sandbox.post("/courier/v1/shipments", json=shipment(None))).json()["waybill_no"]
    second = (await sandbox.post("/courier/v1/shipments", json=shipment(None))).json()["waybill_no"]
    cursor = (await sandbox.get("/courier/v1/changes", params={"since": 0, "limit": 500})).json()[
        "next_since"
    ]
    while True:  # read to the end
        page = (await sandbox.get("/courier/v1/changes", params={"since": cursor, "limit": 500})).json()
        if not page["events"]:
            break
        cursor = page["next_since"]

    # The first move takes its seq and stays uncommitted for a while; the second starts after it.
    slow = asyncio.create_task(
        sandbox.post(f"/_control/courier/shipments/{first}/advance", json={"hold_ms": 600})
    )
    await asyncio.sleep(0.15)
    fast = asyncio.create_task(sandbox.post(f"/_control/courier/shipments/{second}/advance", json={}))
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        page = (await sandbox.get("/courier/v1/changes", params={"since": cursor})).json()
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_since"]
        await asyncio.sleep(0.02)
    slow_event, fast_event = (await slow).json(), (await fast).json()
    # A reader that only moves its cursor forward still saw both, the slow one first.
    assert seen == [slow_event["seq"], fast_event["seq"]]
    assert fast_event["seq"] == slow_event["seq"] + 1


async def test_feed_under_concurrent_writers_is_gapless(sandbox: httpx.AsyncClient) -> None:
    waybills = [
        (await sandbox.post("/courier/v1/shipments", json=shipment(None))).json()["waybill_no"]
        for _ in range(8)
    ]
    cursor = int((await sandbox.get(f"/courier/v1/shipments/{waybills[-1]}")).json()["events"][-1]["seq"])
    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            page = (await sandbox.get("/courier/v1/changes", params={"since": cursor})).json()
            seen.extend(e["seq"] for e in page["events"])
            cursor = page["next_since"]
            if finished and not page["events"]:
                return

    async def writer(waybill: str) -> None:
        for _ in range(3):
            await sandbox.post(
                f"/_control/courier/shipments/{waybill}/advance", json={"hold_ms": secrets.randbelow(30)}
            )

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in waybills))
    done.set()
    await task
    assert len(seen) == 24
    assert seen == list(range(seen[0], seen[0] + 24))
