"""The sandbox's PostgreSQL access: its own pool, its own schema."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

SCHEMA_SQL = Path(__file__).parent / "schema.sql"
_LOCK = 0x5358_5342_5800  # "SXSBX"


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda v: msgspec.json.encode(v).decode(),
        decoder=msgspec.json.decode,
        format="text",
    )


async def create_pool(dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8, init=_init, command_timeout=30)
    assert pool is not None
    return pool


async def ensure_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        # Several sandboxes may start at once in tests: serialise the DDL.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        try:
            await conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
