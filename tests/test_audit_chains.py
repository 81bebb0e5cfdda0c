"""The audit log's 16 chains: every way of tampering is detected, also a cut tail (by the anchors),
and concurrent writers keep every chain intact. Each test tampers in a database of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from auth.audit import AuditAnchor, _row_hash, record, verify_anchors, verify_chain
from bff.platform.migrate import migrate
from tests.conftest import with_database

KEY = b"k" * 32


@pytest.fixture
async def fresh(services: Any) -> AsyncIterator[asyncpg.Connection]:
    name = f"sx_audit_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(services.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(services.admin_url, name)
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def fill(conn: asyncpg.Connection, n: int = 64) -> None:
    for i in range(n):
        await record(
            conn,
            subject=f"p-{i % 7}",
            action="test",
            object=f"o-{i}",
            result="ok",
            channel="app",
            request_id=f"rid-{i}",
        )


async def longest_chain(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    chain = await conn.fetchval(
        "SELECT chain FROM bff.audit_log WHERE chain IS NOT NULL GROUP BY chain ORDER BY count(*) DESC LIMIT 1"
    )
    return list(await conn.fetch("SELECT * FROM bff.audit_log WHERE chain = $1 ORDER BY chain_seq", chain))


class Behind:
    """What a superuser can do with the triggers off."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> asyncpg.Connection:
        await self.conn.execute("SET session_replication_role = replica")
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.execute("SET session_replication_role = DEFAULT")


async def rechain(conn: asyncpg.Connection, chain: int) -> None:
    """Recompute a chain's hashes and its head after tampering, as a forger who knows the algorithm would."""
    prev = b""
    rows = await conn.fetch("SELECT * FROM bff.audit_log WHERE chain = $1 ORDER BY chain_seq", chain)
    for position, row in enumerate(rows, start=1):
        await conn.execute("UPDATE bff.audit_log SET chain_seq = $2 WHERE seq = $1", row["seq"], position)
        fixed = await conn.fetchrow("SELECT * FROM bff.audit_log WHERE seq = $1", row["seq"])
        digest = _row_hash(prev, fixed)
        await conn.execute(
            "UPDATE bff.audit_log SET prev_hash = $2, hash = $3 WHERE seq = $1", row["seq"], prev, digest
        )
        prev = digest
    await conn.execute(
        "UPDATE bff.audit_heads SET chain_seq = $2, hash = $3 WHERE chain = $1", chain, len(rows), prev
    )


async def test_the_records_spread_over_chains_and_verify(fresh) -> None:
    await fill(fresh)
    chains = await fresh.fetchval("SELECT count(DISTINCT chain) FROM bff.audit_log")
    assert chains >= 8  # 64 records over 16 chains
    assert await verify_chain(fresh) is None
    await AuditAnchor(_Pool(fresh), KEY).run()
    assert await verify_anchors(fresh, KEY) is None


async def test_an_edited_record_is_found(fresh) -> None:
    await fill(fresh)
    victim = (await longest_chain(fresh))[2]
    async with Behind(fresh) as conn:
        await conn.execute("UPDATE bff.audit_log SET result = 'denied' WHERE seq = $1", victim["seq"])
    assert await verify_chain(fresh) == victim["seq"]


async def test_a_deleted_record_is_found(fresh) -> None:
    await fill(fresh)
    rows = await longest_chain(fresh)
    async with Behind(fresh) as conn:
        await conn.execute("DELETE FROM bff.audit_log WHERE seq = $1", rows[1]["seq"])
    assert await verify_chain(fresh) == rows[2]["seq"]


async def test_reordered_records_are_found(fresh) -> None:
    await fill(fresh)
    rows = await longest_chain(fresh)
    first, second = rows[1], rows[2]
    async with Behind(fresh) as conn:
        # Swap their places in the chain (and their hashes along): the links no longer hold.
        await conn.execute("UPDATE bff.audit_log SET chain_seq = -1 WHERE seq = $1", first["seq"])
        await conn.execute(
            "UPDATE bff.audit_log SET chain_seq = $2 WHERE seq = $1", second["seq"], first["chain_seq"]
        )
        await conn.execute(
            "UPDATE bff.audit_log SET chain_seq = $2 WHERE seq = $1", first["seq"], second["chain_seq"]
        )
    assert await verify_chain(fresh) in {first["seq"], second["seq"]}


async def test_an_inserted_record_is_found(fresh) -> None:
    await fill(fresh)
    rows = await longest_chain(fresh)
    async with Behind(fresh) as conn:
        await conn.execute(
            """
            INSERT INTO bff.audit_log (seq, at, subject, action, object, result, channel, request_id,
                                       prev_hash, hash, chain, chain_seq)
            VALUES (nextval('bff.audit_log_seq'), now(), 'x', 'forged', 'o', 'ok', 'app', 'r', $1, $1, $2, $3)
            """,
            rows[-1]["hash"],
            rows[-1]["chain"],
            rows[-1]["chain_seq"] + 1,
        )
    assert await verify_chain(fresh) is not None


async def test_a_cut_tail_is_found_by_the_anchor(fresh) -> None:
    await fill(fresh)
    await AuditAnchor(_Pool(fresh), KEY).run()
    rows = await longest_chain(fresh)
    async with Behind(fresh) as conn:
        # Remove the newest two records of a chain and rewrite its head: the chain itself is consistent…
        await conn.execute(
            "DELETE FROM bff.audit_log WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows[-2:]]
        )
        await conn.execute(
            "UPDATE bff.audit_heads SET chain_seq = $2, hash = $3 WHERE chain = $1",
            rows[0]["chain"],
            rows[-3]["chain_seq"],
            rows[-3]["hash"],
        )
    assert await verify_chain(fresh) is None
    # …but not what was anchored outside the table.
    problem = await verify_anchors(fresh, KEY)
    assert problem is not None and f"chain {rows[0]['chain']}" in problem


async def test_a_rewritten_chain_is_found_by_the_anchor_and_a_forged_anchor_too(fresh) -> None:
    await fill(fresh)
    await AuditAnchor(_Pool(fresh), KEY).run()
    rows = await longest_chain(fresh)
    async with Behind(fresh) as conn:
        await conn.execute("UPDATE bff.audit_log SET result = 'denied' WHERE seq = $1", rows[1]["seq"])
        await rechain(conn, rows[0]["chain"])
    assert await verify_chain(fresh) is None  # a forger who knows the algorithm re-hashed the chain
    assert await verify_anchors(fresh, KEY) is not None
    # An anchor signed with another key is no anchor.
    assert "signature" in (await verify_anchors(fresh, b"x" * 32) or "")


async def test_concurrent_writers_keep_every_chain_intact(services: Any, fresh) -> None:
    url = with_database(services.admin_url, await fresh.fetchval("SELECT current_database()"))
    pool = await asyncpg.create_pool(url, min_size=8, max_size=16)
    assert pool is not None
    try:
        await asyncio.gather(
            *[
                record(
                    pool,
                    subject=f"p-{i}",
                    action="test",
                    object="o",
                    result="ok",
                    channel="app",
                    request_id=f"r-{i}",
                )
                for i in range(400)
            ]
        )
        assert await fresh.fetchval("SELECT count(*) FROM bff.audit_log") == 400
        assert await verify_chain(fresh) is None
        heads = await fresh.fetchval("SELECT sum(chain_seq) FROM bff.audit_heads")
        assert heads == 400
    finally:
        await pool.close()


class _Pool:
    """`AuditAnchor` takes a pool; these tests hold one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch(self, *args: Any) -> Any:
        return await self.conn.fetch(*args)

    async def execute(self, *args: Any) -> Any:
        return await self.conn.execute(*args)
