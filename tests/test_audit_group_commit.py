"""Audit records written through the app's pool are group-committed (auth/audit.py): callers that
write at the same moment share one INSERT, yet each returns only once its own record is committed,
a failing record fails its own caller only, and two processes' batches do not deadlock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from auth.audit import record, verify_chain
from bff.platform.db import create_pool
from bff.platform.migrate import migrate
from bff.platform.settings import Settings
from tests.conftest import with_database


@pytest.fixture
async def url(services: Any) -> AsyncIterator[str]:
    name = f"sx_audit_gc_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(services.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        database_url = with_database(services.admin_url, name)
        await migrate(database_url)
        yield database_url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def app_pool(url: str) -> asyncpg.Pool:
    """The pool the API builds (bff.platform.db), one per process."""
    return await create_pool(Settings(env="test", database_url=url, db_pool_min=2, db_pool_max=8))


async def test_concurrent_readers_share_inserts_and_each_returns_once_its_record_is_committed(
    url: str,
) -> None:
    # Two pools: two API processes writing at once, each batching on its own.
    pools = [await app_pool(url), await app_pool(url)]
    watcher = await asyncpg.create_pool(url, min_size=4, max_size=4)
    assert watcher is not None
    unseen: list[str] = []

    async def read(i: int) -> None:
        rid = f"req-{i}-{uuid.uuid4().hex[:6]}"
        await record(
            pools[i % 2],
            subject=f"person-{i % 37}",
            action="personal_data_read",
            object=f"person:{i}",
            result="masked",
            channel="app",
            request_id=rid,
        )
        # Returned: committed, visible to anyone else right now.
        if await watcher.fetchval("SELECT count(*) FROM bff.audit_log WHERE request_id = $1", rid) != 1:
            unseen.append(rid)

    try:
        await asyncio.gather(*(read(i) for i in range(600)))
        assert unseen == []
        assert await watcher.fetchval("SELECT count(*) FROM bff.audit_log") == 600
        assert await verify_chain(watcher) is None
        assert await watcher.fetchval("SELECT sum(chain_seq) FROM bff.audit_heads") == 600
        # Rows written in one transaction share its xmin: far fewer transactions than records.
        transactions = await watcher.fetchval("SELECT count(DISTINCT xmin::text) FROM bff.audit_log")
        assert transactions < 300, transactions
    finally:
        await watcher.close()
        for pool in pools:
            await pool.close()


async def test_a_record_that_cannot_be_written_fails_its_own_caller_only(url: str) -> None:
    pool = await app_pool(url)
    try:
        outcomes = await asyncio.gather(
            *(
                record(
                    pool,
                    # PostgreSQL text cannot hold NUL: this one record is refused.
                    subject="bad\x00subject" if i == 7 else f"p-{i}",
                    action="personal_data_read",
                    object="o",
                    result="masked",
                    channel="app",
                    request_id=f"r-{i}",
                )
                for i in range(40)
            ),
            return_exceptions=True,
        )
        failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
        assert failed == [7]
        assert await pool.fetchval("SELECT count(*) FROM bff.audit_log") == 39
        assert await verify_chain(pool) is None
    finally:
        await pool.close()


async def test_a_caller_that_gives_up_waiting_still_has_its_record_written(url: str) -> None:
    pool = await app_pool(url)
    try:
        # Hold every chain head so the batch waits; the caller is cancelled meanwhile (a client
        # that went away). Its record must still be written once the heads are free.
        blocker = await asyncpg.connect(url)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT * FROM bff.audit_heads FOR UPDATE")
        task = asyncio.create_task(
            record(pool, subject="p", action="personal_data_read", object="o", result="masked", channel="app")
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tx.rollback()
        await blocker.close()
        for _ in range(100):
            if await pool.fetchval("SELECT count(*) FROM bff.audit_log") == 1:
                break
            await asyncio.sleep(0.05)
        assert await pool.fetchval("SELECT count(*) FROM bff.audit_log") == 1
        assert await verify_chain(pool) is None
    finally:
        await pool.close()
