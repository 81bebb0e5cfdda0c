"""Rolling restarts drop nothing: on SIGTERM an API process fails readiness first, keeps serving through
its grace period (new requests are answered, told to close their connection), finishes what is in
flight, then exits cleanly; a worker lets its running jobs finish and gives up the leader lock."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from tests.conftest import SERVICE_LOGS, free_port, start_process, stop_process, wait_http
from tests.test_journey_helpers import serve_env

GRACE_S = 2.0


async def test_sigterm_drains_before_the_api_stops(services, sandbox_url, sandbox) -> None:
    port = free_port()
    env = serve_env(
        services,
        sandbox_url,
        port,
        SHUTDOWN_GRACE_S=str(GRACE_S),
        ITEM_BUDGET_MS="6000",
        REQUEST_BUDGET_MS="8000",
        UPSTREAM_CALL_TIMEOUT_S="5",
    )
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-drain")
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, f"{url}/readyz", proc)
        # An item the mirror does not hold is asked of the item library, slowed down to stay in flight.
        slow = await sandbox.put("/_control/faults/catalogue", json={"latencyMs": 2500})
        assert slow.status_code == 200, slow.text
        async with httpx.AsyncClient(base_url=url, timeout=15) as client:
            in_flight = asyncio.create_task(client.get("/api/v1/items/ZZ-NOT-MIRRORED"))
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            await asyncio.sleep(0.3)
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["code"] == "draining", ready.text
            # Still serving new requests through the grace period, each told to close its connection.
            served = await client.get("/healthz")
            assert served.status_code == 200 and served.headers.get("connection") == "close"
            answer = await in_flight
            # The in-flight request got its real answer (the library knows no such item), not a reset.
            assert answer.status_code == 404 and answer.json()["code"] == "item_not_found", answer.text
            code = await asyncio.to_thread(proc.wait, 30)
            # uvicorn re-raises the signal it shut down for, once it is done: exit by SIGTERM, not a crash.
            assert code in (0, -signal.SIGTERM)
            assert time.monotonic() - started >= GRACE_S - 0.3
        refused = False
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.HTTPError:
            refused = True
        assert refused, "the process should have stopped listening"
    finally:
        await sandbox.delete("/_control/faults/catalogue")
        stop_process(proc)


async def test_sigterm_stops_a_worker_and_frees_the_leader_lock(services, sandbox_url) -> None:
    env = serve_env(services, sandbox_url, free_port())
    proc = start_process([sys.executable, "-m", "bff.cli", "worker"], env, "bff-worker-term")
    log = SERVICE_LOGS[-1]
    conn = await asyncpg.connect(services.database_url)
    try:
        deadline = time.monotonic() + 30
        # pg_locks spans the cluster: count only this database's leader lock.
        leader = """
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """
        key = 0x5358_574B_5200 & 0xFFFFFFFF
        while not await conn.fetchval(leader, key):
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never led"
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            pytest.fail("no exit within 30 s of SIGTERM; the worker's log ends:\n" + log.read_text()[-4000:])
        assert code == 0
        assert await conn.fetchval(leader, key) == 0
        assert "worker_stopped" in log.read_text()
    finally:
        await conn.close()
        stop_process(proc)
