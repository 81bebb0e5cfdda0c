"""The audit log every domain writes to: append-only, hash-chained rows in `bff.audit_log`.

The chaining happens in the table's trigger (it serialises writers and computes each row's hash
from the previous one), so no caller can add a row outside the chain. `verify_chain` recomputes the
hashes here, independently, and names the first row that does not match.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg

from adapters import context

_INSERT = """
INSERT INTO bff.audit_log (seq, at, subject, action, object, result, channel, request_id, prev_hash, hash)
VALUES (0, now(), $1, $2, $3, $4, $5, $6, '\\x', '\\x')
"""


async def record(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool | Any,
    *,
    subject: str,
    action: str,
    object: str,
    result: str,
    channel: str,
    request_id: str | None = None,
) -> None:
    """Append one audit record. Inside a caller's transaction the chain lock is held until commit:
    write the audit record last."""
    rid = request_id or context.request_id.get() or "-"
    await conn_or_pool.execute(_INSERT, subject, action, object, result, channel, rid)


def _row_hash(prev: bytes, row: asyncpg.Record) -> bytes:
    at: datetime = row["at"].astimezone(UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    fields = [
        str(row["seq"]),
        stamp,
        row["subject"],
        row["action"],
        row["object"],
        row["result"],
        row["channel"],
        row["request_id"],
    ]
    return hashlib.sha256(prev + "\x1f".join(fields).encode()).digest()


async def verify_chain(conn: asyncpg.Connection | asyncpg.Pool | Any) -> int | None:
    """Recompute the whole chain; returns the seq of the first bad row, or None when it is intact."""
    prev = b""
    async with conn.acquire() if isinstance(conn, asyncpg.Pool) else _same(conn) as c:
        async with c.transaction(isolation="repeatable_read", readonly=True):
            async for row in c.cursor("SELECT * FROM bff.audit_log ORDER BY seq", prefetch=500):
                if row["prev_hash"] != prev or row["hash"] != _row_hash(prev, row):
                    return int(row["seq"])
                prev = row["hash"]
    return None


class _same:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def __aenter__(self) -> Any:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None
