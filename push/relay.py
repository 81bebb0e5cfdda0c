"""The relay: outbox rows onto the Redis stream, leader-only.

Woken by LISTEN/NOTIFY (`sx_outbox`, a trigger on the outbox) on a DEDICATED connection (a pooled
one runs UNLISTEN on release), and by polling every `poll_s` as a fallback (a missed notification,
a reconnect). Rows are drained with `FOR UPDATE SKIP LOCKED`, so two relays never publish one row
at the same moment. The outbox is the truth: a row published but not finished by a consumer within
`republish_after_s` (the stream was trimmed, Redis restarted empty, a consumer group vanished) is
published again; consumers are idempotent, so a duplicate entry changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from redis.asyncio import Redis

from adapters import context
from push.metrics import OUTBOX_BACKLOG, REPUBLISHED, STREAM_LENGTH, STREAM_PENDING
from push.stream import GROUP, STREAM

# The stream is a transport, not the record: trimmed approximately, far above any normal backlog.
STREAM_MAXLEN = 200_000


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        database_url: str,
        *,
        batch: int = 500,
        poll_s: float = 1.0,
        republish_after_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.database_url = database_url
        self.batch = batch
        self.poll_s = poll_s
        self.republish_after_s = republish_after_s
        self._wake = asyncio.Event()

    async def _publish(self, rows: list[Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            pipe.xadd(STREAM, {"id": str(row["id"])}, maxlen=STREAM_MAXLEN, approximate=True)
        await pipe.execute()

    async def publish_new(self) -> int:
        """One batch of unpublished rows onto the stream; how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT id FROM bff.outbox WHERE published_at IS NULL ORDER BY id LIMIT $1
                FOR UPDATE SKIP LOCKED
                """,
                self.batch,
            )
            if not rows:
                return 0
            await self._publish(rows)
            await conn.execute(
                "UPDATE bff.outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        return len(rows)

    async def republish_stale(self) -> int:
        """Rows on the stream too long without a consumer finishing them: published again."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT id FROM bff.outbox
                WHERE delivered_at IS NULL AND published_at < now() - make_interval(secs => $1)
                ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
                """,
                self.republish_after_s,
                self.batch,
            )
            if not rows:
                return 0
            await self._publish(rows)
            await conn.execute(
                "UPDATE bff.outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        REPUBLISHED.inc(len(rows))
        return len(rows)

    async def gauges(self) -> None:
        with contextlib.suppress(Exception):
            STREAM_LENGTH.set(await self.redis.xlen(STREAM))
            pending = await self.redis.xpending(STREAM, GROUP)
            STREAM_PENDING.set(int(pending["pending"]) if pending else 0)
        with contextlib.suppress(Exception):
            OUTBOX_BACKLOG.set(
                await self.pool.fetchval("SELECT count(*) FROM bff.outbox WHERE published_at IS NULL")
            )

    async def run(self) -> None:
        """Until cancelled: drain on every wake-up and every `poll_s`."""
        listener: asyncpg.Connection | None = None
        rounds = 0
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                try:
                    with context.budget(30.0):
                        moved = await self.publish_new()
                        if rounds % 5 == 0:
                            moved += await self.republish_stale()
                            await self.gauges()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    moved = 0
                    await asyncio.sleep(self.poll_s)
                rounds += 1
                if moved >= self.batch:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(self.database_url, timeout=5.0)
            await conn.add_listener("sx_outbox", lambda *_: self._wake.set())
            return conn
        except (OSError, asyncpg.PostgresError):
            return None  # polling carries on; the next round tries again
