"""`kill -9` while money moves: a real `sanxiang serve` receives the sandbox's payment notifications
and a real `sanxiang worker` reconciles, and both are killed over and over during a burst of
several hundred orders. Afterwards every order's state equals the platform's, and the ledger's
sums equal the platform's: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import AppFactory, Services, free_port, start_process, stop_process, wait_http
from tests.payment_helpers import Relay, create_payment, payment_client, set_policy
from tests.test_journey_helpers import deliver, serve_env

pytestmark = pytest.mark.slow

ORDERS = 300
DROPPED = 40  # paid with the notification lost: only the reconciler can find these
UNPAID = 30  # never paid: must stay unpaid, here and there
API_KILLS = 8  # a restart takes seconds on a shared 2-core machine
WORKER_KILLS = 16
MIN_KILLS = 24


_DB_LOCK = asyncio.Lock()  # one test connection: one statement at a time


async def _case_with_fee(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, person_id: str, code: str
) -> str:
    """A case the BFF knows, accepted at the case system, with its fee notice delivered."""
    case_id = uuid.uuid4()
    created = await sandbox.post(
        "/cases/applications",
        json={
            "request_id": str(case_id),
            "catalog_code": code,
            "task_code": "T" + code,
            "region_code": "430000",
            "applicant_ref": person_id,
            "channel": "online",
            "form": {},
            "materials": [],
        },
    )
    assert created.status_code == 201, created.text
    project_no = created.json()["project_no"]
    async with _DB_LOCK:
        await db.execute(
            """
            INSERT INTO bff.cases (id, person_id, request_id, project_no, item_code, item_name, region_code,
                                   task_code, channel, promise_days, status, form, materials)
            VALUES ($1, $2, $1, $3, $4, '测试事项', '430000', $5, 'online', 5, 'submitted', '{}', '[]')
            """,
            case_id,
            person_id,
            project_no,
            code,
            "T" + code,
        )
    accepted = await sandbox.post(
        f"/cases/_control/applications/{project_no}/advance", json={"action": "accept"}
    )
    assert accepted.status_code == 201, accepted.text
    fee = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee",
        json={
            "lines": [{"name": "工本费", "amount_fen": 100 + random.randrange(900)}],
            "payable_by": (date.today() + timedelta(days=7)).isoformat(),
            "deliver": False,
        },
    )
    assert fee.status_code == 201, fee.text
    for event in (accepted.json(), fee.json()["event"]):
        assert (await deliver(client, event)).status_code == 200
    return str(case_id)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def test_kill_9_of_api_and_worker_during_a_burst_loses_and_doubles_nothing(
    make_client: AppFactory,
    services: Services,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    notify_url = f"{api_url}/api/v1/payments/wechat/notify"
    relay = Relay(url=notify_url)  # not started: the orders name the real process's URL
    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    code = await db.fetchval(
        "SELECT catalog_code FROM sandbox.catalogue_entries WHERE status = 'active' ORDER BY catalog_code LIMIT 1"
    )

    gate = asyncio.Semaphore(8)

    async def one() -> dict[str, Any]:
        async with gate:
            case_id = await _case_with_fee(client, sandbox, db, who["person_id"], code)
            made = await create_payment(client, who, case_id)
            assert made.status_code == 201, made.text
            return made.json()  # type: ignore[no-any-return]

    orders = [await one()]  # the first alone: the sandbox makes its platform certificate at first use
    orders += await asyncio.gather(*(one() for _ in range(ORDERS - 1)))
    numbers = [o["outTradeNo"] for o in orders]

    env = serve_env(
        services,
        sandbox_url,
        port,
        WECHATPAY_URL=f"{sandbox_url}/wechatpay",
        PAYMENT_NOTIFY_URL=notify_url,
        PAYMENT_CHECK_AFTER_S="1",
        PAYMENT_CHECK_MAX_S="2",
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(which: str) -> None:
        args = [sys.executable, "-m", "bff.cli", "serve" if which == "api" else "worker"]
        procs[which] = start_process(args, env, f"pay-kill-{which}")

    start("api")
    start("worker")
    await asyncio.to_thread(wait_http, f"{api_url}/healthz", procs["api"])
    kills = {"api": 0, "worker": 0}
    await sandbox.put("/_control/wechatpay/time-factor", json={"factor": 0.005})
    try:
        payable = numbers[UNPAID:]
        # Some notifications are lost for good (only the reconciler can find those orders).
        await set_policy(sandbox, drop=True)
        for number in payable[:DROPPED]:
            assert (
                await sandbox.post(f"/_control/wechatpay/orders/{number}/pay", json={})
            ).status_code == 200
        await set_policy(sandbox)

        def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200
            return False

        async def api_killer() -> None:
            # Killed only once it is up and has been handling the burst's notifications a while.
            while kills["api"] < API_KILLS:
                up_by = time.monotonic() + 90
                while not await asyncio.to_thread(healthy):
                    assert time.monotonic() < up_by, "the API did not come back"
                    assert procs["api"].poll() is None, "the API exited on its own"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5 + random.random())
                _kill(procs["api"])
                kills["api"] += 1
                start("api")

        async def worker_killer() -> None:
            while kills["worker"] < WORKER_KILLS:
                await asyncio.sleep(1.5 + random.random() * 1.5)
                _kill(procs["worker"])
                kills["worker"] += 1
                start("worker")

        async def payer() -> None:
            # The rest are paid in WeChat in small batches throughout the kills.
            for at in range(DROPPED, len(payable), 8):
                batch = payable[at : at + 8]
                answers = await asyncio.gather(
                    *(sandbox.post(f"/_control/wechatpay/orders/{n}/pay", json={}) for n in batch)
                )
                assert all(a.status_code == 200 for a in answers)
                await asyncio.sleep(0.4)

        await asyncio.gather(api_killer(), worker_killer(), payer())
        assert kills["api"] + kills["worker"] >= MIN_KILLS, kills

        # Both run undisturbed now: retries (compressed schedule) and the reconciler catch up.
        for which in ("api", "worker"):
            if procs[which].poll() is not None:
                start(which)
        await asyncio.to_thread(wait_http, f"{api_url}/healthz", procs["api"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            paid = await db.fetchval(
                "SELECT count(*) FROM bff.payment_orders WHERE out_trade_no = ANY($1) AND status = 'paid'",
                payable,
            )
            pending = await db.fetchval(
                "SELECT count(*) FROM bff.payment_orders WHERE out_trade_no = ANY($1) AND report_pending",
                numbers,
            )
            if paid == len(payable) and pending == 0:
                break
            await asyncio.sleep(0.5)
    finally:
        await sandbox.put("/_control/wechatpay/time-factor", json={"factor": 1.0})
        await set_policy(sandbox)
        for proc in procs.values():
            with contextlib.suppress(Exception):
                stop_process(proc)

    held = (await sandbox.get("/_control/wechatpay/state")).json()
    theirs = {o["out_trade_no"]: o for o in held["orders"] if o["out_trade_no"] in set(numbers)}
    ours = {
        r["out_trade_no"]: r
        for r in await db.fetch("SELECT * FROM bff.payment_orders WHERE out_trade_no = ANY($1)", numbers)
    }
    assert len(theirs) == len(ours) == ORDERS
    mismatched = [
        (n, ours[n]["status"], theirs[n]["trade_state"])
        for n in numbers
        if (ours[n]["status"] == "paid") != (theirs[n]["trade_state"] == "SUCCESS")
        or ours[n]["trade_state"] != theirs[n]["trade_state"]
    ]
    assert mismatched == [], mismatched[:5]
    ledger = await db.fetch(
        """
        SELECT out_trade_no, count(*) AS n, sum(amount_fen)::bigint AS fen FROM bff.payment_ledger
        WHERE kind = 'payment' AND out_trade_no = ANY($1) GROUP BY out_trade_no
        """,
        numbers,
    )
    assert all(r["n"] == 1 for r in ledger), [dict(r) for r in ledger if r["n"] != 1][:5]
    platform_fen = sum(o["payer_total"] or 0 for o in theirs.values() if o["transaction_id"])
    assert sum(r["fen"] for r in ledger) == platform_fen
    assert len(ledger) == ORDERS - UNPAID
    assert all(ours[n]["transaction_id"] == theirs[n]["transaction_id"] for n in numbers)
    # The case system heard of each paid fee exactly once.
    told = await db.fetch(
        """
        SELECT f.fee_id, f.status, (SELECT count(*) FROM sandbox.case_events e
                                     WHERE e.project_no = f.project_no AND e.type = 'fee_paid') AS n
        FROM sandbox.case_fees f WHERE f.fee_id = ANY($1)
        """,
        [ours[n]["fee_id"] for n in payable],
    )
    assert len(told) == len(payable) and all(r["status"] == "paid" and r["n"] == 1 for r in told)
    # The kills did hit deliveries (the platform saw connections fail and retried), and the lost
    # notifications' orders were found by the (repeatedly killed) reconciler.
    failed = await db.fetchval(
        """
        SELECT count(*) FROM sandbox.wechatpay_attempts a JOIN sandbox.wechatpay_notifications n
          ON n.id = a.notification_id
        WHERE n.out_trade_no = ANY($1) AND a.outcome NOT LIKE 'http_2%' AND a.outcome <> 'dropped'
        """,
        numbers,
    )
    via = await db.fetch(
        "SELECT via, count(*) AS n FROM bff.payment_ledger WHERE out_trade_no = ANY($1) GROUP BY via",
        payable[:DROPPED],
    )
    assert {r["via"]: r["n"] for r in via} == {"reconcile": DROPPED}
    assert failed > 0
    print(f"kills={kills} failed_deliveries={failed} orders={ORDERS} paid={len(payable)}")
