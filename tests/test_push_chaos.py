"""Crash claims of push, proven with processes: `kill -9` of worker processes (20 kills across 2
workers) during a burst of 5,000 events, and a Redis restart (its data gone) in the middle.

Real `python -m bff.cli worker` processes on the session's PostgreSQL and a Redis server of this
test's own (the machine's `redis-server` on a free port, no persistence: a restart loses the
stream and its group). The push gateway is the sandbox, which records every request and accepted
message; receipts come back to a real API replica. Shown: 0 events lost (a notification per event),
0 duplicate sends (one accepted message per event, the gateway de-duplicating our repeats), every
notification final (delivered, by its receipt).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from push import outbox
from push.topics import CaseChanged
from tests.conftest import REPO, free_port
from tests.test_journey_helpers import serve_env
from tests.test_push import served

pytestmark = pytest.mark.slow

EVENTS = 5_000
PEOPLE = 100
KILLS = 20
WORKERS = 2


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed for this test"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_worker(env: dict[str, str], log_dir: Path, n: int) -> subprocess.Popen[bytes]:
    handle = (log_dir / f"worker-{n}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "bff.cli", "worker"],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


async def test_kill_9_of_workers_and_a_redis_restart_during_a_burst_lose_and_duplicate_nothing(
    services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    work = Path(tempfile.mkdtemp(prefix="push-chaos-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis_proc = start_redis(redis_port, work)
    # Residents with one installed app each.
    people = [str(uuid.uuid4()) for _ in range(PEOPLE)]
    installed = await sandbox.post(
        "/_control/pushgw/devices",
        json={"devices": [{"platform": "android", "personRef": p} for p in people]},
    )
    tokens = [d["token"] for d in installed.json()["devices"]]
    await db.executemany(
        "INSERT INTO bff.push_devices (token, person_id, platform) VALUES ($1, $2, 'android')",
        list(zip(tokens, people, strict=True)),
    )
    # The test's own single Redis (it is killed and restarted), also under SX_TEST_REDIS=cluster.
    api_overrides = {
        "redis_url": redis_url,
        "redis_cluster": False,
        "pushgw_url": f"{sandbox_url}/pushgw",
        "sms_url": f"{sandbox_url}/sms",
    }
    workers: list[subprocess.Popen[bytes]] = []
    kills = 0
    try:
        async with served(api_overrides, services, sandbox_url) as api:
            env = serve_env(
                services,
                sandbox_url,
                free_port(),
                REDIS_URL=redis_url,
                REDIS_CLUSTER="false",
                PUSHGW_URL=f"{sandbox_url}/pushgw",
                SMS_URL=f"{sandbox_url}/sms",
                PUSH_CALLBACK_BASE_URL=api,
                PUSH_RELAY_POLL_S="0.2",
                PUSH_CLAIM_IDLE_S="2",
                PUSH_LEASE_S="3",
                PUSH_REPUBLISH_AFTER_S="5",
                PUSH_CONSUMER_CONCURRENCY="32",
                CATALOGUE_SYNC_INTERVAL_S="1000000000000",
                LOG_LEVEL="WARNING",
            )
            workers = [start_worker(env, work, n) for n in range(WORKERS)]
            rows: list[int] = []

            async def burst() -> None:
                for start in range(0, EVENTS, 100):
                    async with db.transaction():
                        for i in range(start, start + 100):
                            dedup = f"chaos:{uuid.uuid4()}"
                            await outbox.enqueue(
                                db,
                                "case.changed",
                                people[i % PEOPLE],
                                dedup,
                                CaseChanged(
                                    case_id=str(uuid.uuid4()),
                                    project_no=f"SXCHAOS{i:06d}",
                                    item_name="城乡居民基本养老保险参保登记",
                                    event="step",
                                    status="in_progress",
                                    result=None,
                                    occurred_at="2026-12-01T10:00:00+08:00",
                                ),
                            )
                    await asyncio.sleep(0.05)

            async def chaos() -> int:
                nonlocal redis_proc
                done = 0
                rng = random.Random(12)
                for k in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.8, 1.6))
                    victim = rng.randrange(WORKERS)
                    os.kill(workers[victim].pid, signal.SIGKILL)
                    workers[victim].wait()
                    done += 1
                    workers[victim] = start_worker(env, work, victim)
                    if k == KILLS // 2:
                        # Redis dies and comes back empty: the stream and the group are gone.
                        redis_proc.send_signal(signal.SIGKILL)
                        redis_proc.wait()
                        await asyncio.sleep(0.5)
                        redis_proc = start_redis(redis_port, work)
                return done

            started = time.monotonic()
            _, kills = await asyncio.gather(burst(), chaos())
            ids = await db.fetch(
                "SELECT id FROM bff.outbox WHERE dedup_key LIKE 'chaos:%' AND person_id = ANY($1)", people
            )
            rows = [r["id"] for r in ids]
            assert len(rows) == EVENTS
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                counts = await db.fetchrow(
                    """
                    SELECT count(*) AS made, count(*) FILTER (WHERE status = 'delivered') AS delivered
                    FROM bff.notifications WHERE outbox_id = ANY($1)
                    """,
                    rows,
                )
                if counts["delivered"] == EVENTS:
                    break
                await asyncio.sleep(1)
            elapsed = time.monotonic() - started
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
        redis_proc.kill()
        redis_proc.wait()
    sent = await db.fetchrow(
        """
        SELECT count(*) AS messages, count(DISTINCT request_id) AS keys,
               count(DISTINCT split_part(request_id, ':', 1)) AS notifications
        FROM sandbox.pushgw_messages WHERE token = ANY($1)
        """,
        tokens,
    )
    repeats = await db.fetchval(
        "SELECT count(*) FROM sandbox.pushgw_requests WHERE token = ANY($1) AND duplicate", tokens
    )
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM bff.notifications WHERE outbox_id = ANY($1) GROUP BY status", rows
        )
    )
    print(
        f"\n{EVENTS} events, {kills} kill -9, 1 Redis restart: {counts['made']} notifications {statuses}, "
        f"{sent['messages']} messages accepted by the gateway ({repeats} repeats de-duplicated by request_id), "
        f"{elapsed:.1f}s"
    )
    assert kills >= KILLS
    assert counts["made"] == EVENTS, "events lost"
    assert statuses == {"delivered": EVENTS}, "notifications not final"
    assert sent["messages"] == EVENTS and sent["notifications"] == EVENTS, "a duplicate or a missing send"
    shutil.rmtree(work, ignore_errors=True)
