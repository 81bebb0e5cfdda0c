"""500 concurrent booking attempts on one slot of capacity 10, through two real BFF processes.

The booking system's own capacity check is switched off for this test, so what is proven is the
BFF's guarantee alone (its database transaction), across replicas.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.test_journey_helpers import auth, bookable_item, key, open_days, serve_env, upstream_urls

ATTEMPTS = 500
CAPACITY = 10
IN_FLIGHT_PER_INSTANCE = 90


def _env(services, sandbox_url: str, port: int) -> dict[str, str]:
    return serve_env(
        services,
        sandbox_url,
        port,
        # 250 requests land on each process at once: let them queue rather than shed.
        REQUEST_BUDGET_MS="60000",
        UPSTREAM_CALL_TIMEOUT_S="30",
        MAX_IN_FLIGHT="1000",
        DB_POOL_MAX="20",
        DB_COMMAND_TIMEOUT_S="60",
        LOG_LEVEL="WARNING",
    )


async def book_as_the_app_does(client: httpx.AsyncClient, who: dict, slot: str) -> httpx.Response:
    """A 503 (a slower machine's pool or timeout under the burst: `overloaded`) is retried after its
    Retry-After with the same key, as the app does; the answer that counts is the final one."""
    headers = auth(who, key())
    for _ in range(5):
        response = await client.post("/api/v1/appointments", json={"slotId": slot}, headers=headers)
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
    return response


@pytest.mark.slow
async def test_capacity_holds_across_two_instances(make_client, services, sandbox_url, sandbox, db) -> None:
    login_client = await make_client(**upstream_urls(sandbox_url))
    item = await bookable_item(db)
    residents = []
    for chunk in range(0, ATTEMPTS, 20):
        residents += await asyncio.gather(
            *(login_resident(login_client, sandbox, channel="app") for _ in range(min(20, ATTEMPTS - chunk)))
        )
    day = (await open_days(login_client, residents[0], item, 4))[3]
    slot = day["slots"][-1]["slotId"]
    assert (
        await sandbox.put(f"/booking/_control/slots/{slot}", json={"capacity": CAPACITY})
    ).status_code == 200
    # Our copy of the slot learns the new capacity from the slots view.
    await login_client.get(
        f"/api/v1/halls/{item['hall']}/slots",
        params={"item": item["code"], "date": day["date"]},
        headers=auth(residents[0]),
    )
    assert await db.fetchval("SELECT capacity FROM bff.slots WHERE slot_id = $1", slot) == CAPACITY

    ports = [free_port(), free_port()]
    procs = [
        start_process(
            [sys.executable, "-m", "bff.cli", "serve"], _env(services, sandbox_url, port), f"bff-{n}"
        )
        for n, port in enumerate(ports)
    ]
    await sandbox.put("/booking/_control/settings", json={"enforceCapacity": False})
    try:
        for port, proc in zip(ports, procs, strict=True):
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
        # All 500 are launched at once; each process has at most 90 of them in flight, because the
        # platform's Redis client (bff/platform/redis.py) keeps a non-blocking pool of 100
        # connections per process and fails requests beyond it (reported, not ours to change).
        limits = httpx.Limits(
            max_connections=IN_FLIGHT_PER_INSTANCE, max_keepalive_connections=IN_FLIGHT_PER_INSTANCE
        )
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits)
            for port in ports
        ]
        try:
            responses = await asyncio.gather(
                *(book_as_the_app_does(clients[n % 2], who, slot) for n, who in enumerate(residents))
            )
        finally:
            for c in clients:
                await c.aclose()
    finally:
        await sandbox.put("/booking/_control/settings", json={"enforceCapacity": True})
        for proc in procs:
            stop_process(proc)

    statuses = Counter(r.status_code for r in responses)
    codes = Counter(r.json().get("code") for r in responses if r.status_code != 201)
    booked = await db.fetchval(
        "SELECT count(*) FROM bff.appointments WHERE slot_id = $1 AND status IN ('pending', 'booked')", slot
    )
    upstream = (await sandbox.get(f"/booking/_control/slots/{slot}/bookings")).json()["bookings"]
    print(
        f"statuses={dict(statuses)} codes={dict(codes)} bff_booked={booked} upstream_booked={len(upstream)}"
    )
    assert statuses[201] == CAPACITY, (statuses, codes)
    assert booked == CAPACITY
    assert len([b for b in upstream if b["status"] == "booked"]) == CAPACITY
    assert statuses[409] == ATTEMPTS - CAPACITY, (statuses, codes)
    assert codes == {"slot_full": ATTEMPTS - CAPACITY}
    assert all(
        r.headers["content-type"].startswith("application/problem+json")
        for r in responses
        if r.status_code == 409
    )
