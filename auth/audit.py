"""The audit log every domain writes to: append-only, hash-chained rows in `bff.audit_log`.

The chaining happens in the table's trigger, so no caller can add a row outside a chain. There are
16 chains (migration 0102): a record joins the chain a stable hash of its request id and subject
picks, and locks only that chain's head while its transaction runs, so the province's writers do not
queue on one lock. Within a chain each row's hash covers the previous row's hash and its own
position. `verify_chain` recomputes every chain here, independently, and names the first row that
does not match (an edit, a deletion, an insertion or a re-ordering all break a chain).

A superuser could still cut the newest rows of a chain and rewrite its head. So the heads are
anchored outside the table: `AuditAnchor.run` (a worker job) signs the heads with a key the database
does not hold, stores the anchor and writes it to the log stream; `verify_anchors` checks that every
anchored position still holds the anchored hash.

Records written outside a caller's transaction (`record(pool, ...)`: a personal-data read, a refused
access) are group-committed: the callers waiting at the same moment share one multi-row INSERT,
one round trip and one transaction, instead of one each. Each caller still returns only once its
own record is committed (or raises if it could not be), exactly as with a single INSERT, so a
response is never sent for an unaudited read and a crash loses nothing that was answered. Rows
enter the batch's INSERT ordered by chain, so concurrent batches lock chain heads in one order and
cannot deadlock with each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import weakref
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from adapters import context

log = logging.getLogger("auth.audit")

_INSERT = """
INSERT INTO bff.audit_log (seq, at, subject, action, object, result, channel, request_id, prev_hash, hash)
VALUES (0, now(), $1, $2, $3, $4, $5, $6, '\\x', '\\x')
"""


# The chain a row joins is picked by the trigger (migration 0102); the ORDER BY repeats its formula
# so a batch locks chain heads in ascending order.
_INSERT_MANY = """
INSERT INTO bff.audit_log (seq, at, subject, action, object, result, channel, request_id, prev_hash, hash)
SELECT 0, now(), r.subject, r.action, r.object, r.result, r.channel, r.request_id, '\\x', '\\x'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS r (subject, action, object, result, channel, request_id, n)
ORDER BY hashtext(r.request_id || chr(31) || r.subject) & 15, r.n
"""
_MAX_BATCH = 256

Row = tuple[str, str, str, str, str, str]


class GroupCommit:
    """One pool's batching writer (see the module docstring). The first caller to find no flush
    running starts one; whoever arrives while its INSERT is in flight goes into the next batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.pending: list[tuple[Row, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def write(self, row: Row) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((row, done))
        if self.flusher is None or self.flusher.done():
            # A task of its own: a caller that is cancelled (its client left) does not cancel the
            # batch other callers wait on; its record is still written.
            self.flusher = asyncio.create_task(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        batch: list[tuple[Row, asyncio.Future[None]]] = []
        try:
            while self.pending:
                batch, self.pending = self.pending[:_MAX_BATCH], self.pending[_MAX_BATCH:]
                try:
                    await self._insert([row for row, _ in batch])
                except Exception:  # retried one by one: each caller gets its own outcome
                    for row, done in batch:
                        try:
                            await self._insert([row])
                        except Exception as exc:  # handed to the caller that wrote it
                            _settle(done, exc)
                        else:
                            _settle(done, None)
                else:
                    for _, done in batch:
                        _settle(done, None)
                batch = []
        finally:
            # Cancelled (the loop is shutting down): nobody waits forever, nobody is told "written".
            for _, done in [*batch, *self.pending]:
                _settle(done, RuntimeError("the audit writer stopped before the record was written"))
            self.pending = []

    async def _insert(self, rows: list[Row]) -> None:
        if len(rows) == 1:
            await self.pool.execute(_INSERT, *rows[0])
            return
        await self.pool.execute(_INSERT_MANY, *(list(column) for column in zip(*rows, strict=True)))


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


_writers: weakref.WeakKeyDictionary[asyncpg.Pool, GroupCommit] = weakref.WeakKeyDictionary()


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
    """Append one audit record; returns once it is committed. Inside a caller's transaction (a
    connection) its chain's head stays locked until commit: write the audit record last. Given the
    pool, it is group-committed with the records other callers write at the same moment."""
    rid = request_id or context.request_id.get() or "-"
    acting = context.acting.get()
    if acting is not None:
        # An agent's action (代办): the subject stays the principal whose data it is (their "who used
        # my data" finds it), the channel names the agent and the mandate, inside the hash chain.
        channel = f"{channel};{acting}"
    row: Row = (subject, action, object, result, channel, rid)
    writer = _writer(conn_or_pool) if isinstance(conn_or_pool, asyncpg.Pool) else None
    if writer is not None:
        await writer.write(row)
        return
    await conn_or_pool.execute(_INSERT, *row)


def _writer(pool: asyncpg.Pool) -> GroupCommit | None:
    try:
        writer = _writers.get(pool)
        if writer is None:
            writer = _writers[pool] = GroupCommit(pool)
    except TypeError:  # asyncpg's own Pool has no __weakref__ slot; the app's TimedPool does
        return None
    return writer


def _stamp(row: asyncpg.Record) -> str:
    at: datetime = row["at"].astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _row_hash(prev: bytes, row: asyncpg.Record) -> bytes:
    fields = [row["subject"], row["action"], row["object"], row["result"], row["channel"], row["request_id"]]
    if row["chain"] is None:  # written before migration 0102: the single chain of old
        head = [str(row["seq"]), _stamp(row)]
    else:
        head = [str(row["chain"]), str(row["chain_seq"]), str(row["seq"]), _stamp(row)]
    return hashlib.sha256(prev + "\x1f".join(head + fields).encode()).digest()


async def verify_chain(conn: asyncpg.Connection | asyncpg.Pool | Any) -> int | None:
    """Recompute every chain; the seq of the first bad row (for a chain whose newest rows are gone,
    its last row), or None when all are intact and every head names its chain's last row."""
    async with conn.acquire() if isinstance(conn, asyncpg.Pool) else _same(conn) as c:
        async with c.transaction(isolation="repeatable_read", readonly=True):
            prev = b""
            legacy = "SELECT * FROM bff.audit_log WHERE chain IS NULL ORDER BY seq"
            async for row in c.cursor(legacy, prefetch=500):
                if row["prev_hash"] != prev or row["hash"] != _row_hash(prev, row):
                    return int(row["seq"])
                prev = row["hash"]
            heads = {r["chain"]: r for r in await c.fetch("SELECT * FROM bff.audit_heads")}
            last: dict[int, asyncpg.Record] = {}
            chained = "SELECT * FROM bff.audit_log WHERE chain IS NOT NULL ORDER BY chain, chain_seq"
            async for row in c.cursor(chained, prefetch=500):
                before = last.get(row["chain"])
                expected_seq = before["chain_seq"] + 1 if before is not None else 1
                prev = before["hash"] if before is not None else b""
                if (
                    row["chain_seq"] != expected_seq
                    or row["prev_hash"] != prev
                    or row["hash"] != _row_hash(prev, row)
                    or (before is not None and row["seq"] <= before["seq"])
                ):
                    return int(row["seq"])
                last[row["chain"]] = row
            for chain, head in heads.items():
                tail = last.get(chain)
                if head["chain_seq"] != (tail["chain_seq"] if tail else 0) or head["hash"] != (
                    tail["hash"] if tail else b""
                ):
                    return int(tail["seq"]) if tail is not None else 0
    return None


class Anchor(msgspec.Struct, frozen=True):
    chain: int
    chain_seq: int
    hash: str  # hex


def _sign(key: bytes, heads: list[Anchor]) -> bytes:
    return hmac.new(key, msgspec.json.encode(heads), hashlib.sha256).digest()


class AuditAnchor:
    """The worker's job that anchors the chain heads outside the table (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, key: bytes) -> None:
        self.pool = pool
        self.key = key

    async def run(self) -> list[Anchor]:
        rows = await self.pool.fetch("SELECT chain, chain_seq, hash FROM bff.audit_heads ORDER BY chain")
        heads = [Anchor(r["chain"], r["chain_seq"], bytes(r["hash"]).hex()) for r in rows]
        signature = _sign(self.key, heads)
        # As text: the same statement works whether or not the connection has a jsonb codec.
        await self.pool.execute(
            "INSERT INTO bff.audit_anchors (heads, signature) VALUES ($1::text::jsonb, $2)",
            msgspec.json.encode(heads).decode(),
            signature,
        )
        # The log stream is the copy outside the database.
        log.info("audit_anchor heads=%s signature=%s", msgspec.json.encode(heads).decode(), signature.hex())
        return heads


async def verify_anchors(conn: asyncpg.Connection | asyncpg.Pool | Any, key: bytes) -> str | None:
    """None when every anchor is genuine and every anchored position still holds its hash."""
    anchors = await conn.fetch(
        "SELECT id, heads::text AS heads, signature FROM bff.audit_anchors ORDER BY id"
    )
    for anchor in anchors:
        heads = msgspec.json.decode(anchor["heads"], type=list[Anchor])
        if not hmac.compare_digest(_sign(key, heads), bytes(anchor["signature"])):
            return f"anchor {anchor['id']}: signature does not verify"
        for head in heads:
            if head.chain_seq == 0:
                continue
            found = await conn.fetchval(
                "SELECT hash FROM bff.audit_log WHERE chain = $1 AND chain_seq = $2",
                head.chain,
                head.chain_seq,
            )
            if found is None or bytes(found).hex() != head.hash:
                return f"anchor {anchor['id']}: chain {head.chain} lost or changed record {head.chain_seq}"
    return None


class _same:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def __aenter__(self) -> Any:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None


async def refused_callback(
    pool: asyncpg.Pool | Any, *, sender: str, event_id: str, detail: str | None
) -> None:
    """A sender's signed callback refused before anything was applied: which event (as the header
    named it, unverified) and why."""
    await record(
        pool,
        subject=sender,
        action=f"{sender}.callback",
        object=f"{sender}-event:{event_id[:64]}",
        result=f"rejected: {detail}",
        channel="upstream",
    )
