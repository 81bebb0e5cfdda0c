"""The BFF through a real PgBouncer in transaction mode: the pool runs without prepared-statement caching,
what needs a session (the worker's leader lock, the catalogue sync's run lock, migrations) goes to
PostgreSQL directly, and the resident's journey works through it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from bff.wiring import Job
from bff.worker import run_worker
from tests.auth_helpers import login_resident
from tests.conftest import make_settings
from tests.pgbouncer_helper import pgbouncer
from tests.test_journey_helpers import apply, auth, book, bookable_item, first_slot, key, upstream_urls


@pytest.fixture
def bouncer(services: Any) -> Iterator[str]:
    with pgbouncer(services.database_url) as url:
        yield url


def through(bouncer: str, services: Any) -> dict[str, Any]:
    return {
        "database_url": bouncer,
        "database_direct_url": services.database_url,
        "db_statement_cache_size": 0,
    }


async def transactions_through(bouncer: str, database: str) -> int:
    """What PgBouncer's own console says it carried for our database (the console speaks only the
    simple query protocol: ask it with psql)."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed (postgresql-client): it reads PgBouncer's console")
    out = subprocess.run(
        ["psql", bouncer.rsplit("/", 1)[0] + "/pgbouncer", "-AtF", "|", "-c", "SHOW STATS"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    total = 0
    for line in out.splitlines():
        fields = line.split("|")
        if fields and fields[0] == database:
            total += int(fields[1])  # SHOW STATS: database, total_xact_count, ...
    return total


async def test_the_journey_runs_through_pgbouncer(
    make_client, sandbox, sandbox_url, services, bouncer, db
) -> None:
    database = await db.fetchval("SELECT current_database()")
    before = await transactions_through(bouncer, database)
    client = await make_client(**upstream_urls(sandbox_url), **through(bouncer, services))
    who = await login_resident(client, sandbox)
    item = await bookable_item(db)
    booked = await book(client, who, await first_slot(client, who, item))
    assert booked["status"] == "booked"
    idem = key()
    first = await client.post(
        "/api/v1/appointments/holds",
        json={"slotId": await first_slot(client, who, item, 1)},
        headers=auth(who, idem),
    )
    assert first.status_code == 201, first.text
    replay = await client.post(
        "/api/v1/appointments/holds",
        json={"slotId": await first_slot(client, who, item, 1)},
        headers=auth(who, idem),
    )
    assert replay.content == first.content and replay.headers.get("idempotent-replayed") == "true"
    case = await apply(client, who, item)
    detail = await client.get(f"/api/v1/cases/{case['case']['id']}", headers=auth(who))
    assert detail.status_code == 200 and detail.json()["timeline"]
    # It really went through PgBouncer: its console counted our transactions.
    assert await transactions_through(bouncer, database) > before + 10


async def test_session_locks_go_to_postgresql_itself(services, sandbox_url, bouncer, redis) -> None:
    settings = make_settings(services, sandbox_url, **through(bouncer, services))
    ran = asyncio.Event()

    async def tick() -> None:
        ran.set()

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(settings, stop=stop, extra_jobs=[Job("test-bouncer", interval=0.1, budget=1, run=tick)])
    )
    conn = await asyncpg.connect(services.database_url)
    try:
        await asyncio.wait_for(ran.wait(), 20)
        holders = await conn.fetch(
            """
            SELECT a.client_addr, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            0x5358_574B_5200 & 0xFFFFFFFF,
        )
        # Held on a session of its own (not a pooled server connection PgBouncer would hand to others).
        assert len(holders) == 1 and holders[0]["application_name"] != "pgbouncer"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        await conn.close()
    # The catalogue sync's run lock is a session lock too: of two runs at once, one runs, one is skipped.
    from bff.wiring import open_root

    async with open_root(settings) as root:
        reports = await asyncio.gather(root.catalogue_sync.run(), root.catalogue_sync.run())
    assert sorted(r.mode == "skipped" for r in reports) == [False, True]
