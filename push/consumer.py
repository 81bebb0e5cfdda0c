"""A stream consumer: runs in every `sanxiang worker` (not only the leader), one consumer name per
process, all in one group, so entries are shared out between workers.

Each entry names an outbox row; handling it makes the notification (idempotently) and runs its
channels (`Notifier`), then the entry is acknowledged. A worker killed mid-entry leaves it pending:
another worker claims it with XAUTOCLAIM once it has been idle `claim_idle_s`. A Redis that lost
the group (restart without persistence) gets it made again; the relay re-publishes what the outbox
says was not finished.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import context
from adapters.tasks import cancel
from push.notifier import Notifier
from push.stream import GROUP, STREAM, claimed_entries, ensure_group

log = structlog.get_logger("push.consumer")


class Consumer:
    def __init__(
        self,
        redis: Redis,
        notifier: Notifier,
        *,
        batch: int = 64,
        concurrency: int = 16,
        block_ms: int = 1000,
        claim_idle_s: float = 15.0,
        sweep_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.notifier = notifier
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.sweep_s = sweep_s
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._slots = asyncio.Semaphore(concurrency)

    async def _advance(self, outbox_id: int, nid: uuid.UUID, made: asyncpg.Record) -> None:
        async with self._slots:
            try:
                with context.budget(60.0):
                    await self.notifier.advance(nid, made=made)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Acknowledged all the same, nothing is lost: an accepted notification is the
                # sweep's once its lease lapses. Left pending, an entry that fails every time would be
                # both claimed and republished again and again: the pending list would never stop
                # growing, and it starved the claims of dead consumers' entries.
                log.error("push_entry_failed", outbox_id=str(outbox_id), error=type(exc).__name__)

    async def _process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """Accept the entries' rows at once, advance the ones this worker made, then acknowledge
        them all; a worker killed before that leaves them pending for another worker's claim. A
        row not accepted (PostgreSQL away, a row that cannot be rendered) stays unfinished in the
        outbox, and the relay publishes it again after republish_after_s."""
        if not entries:
            return 0
        ids = [int(fields[b"id"]) for _, fields in entries]
        accepted: dict[int, tuple[uuid.UUID, asyncpg.Record | None]] = {}
        try:
            with context.budget(60.0):
                accepted = await self.notifier.accept_many(ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("push_batch_failed", entries=len(ids), error=type(exc).__name__)
        await asyncio.gather(
            *(self._advance(oid, nid, made) for oid, (nid, made) in accepted.items() if made is not None)
        )
        await self.redis.xack(STREAM, GROUP, *(eid for eid, _ in entries))
        return len(entries)

    async def once(self) -> int:
        """One read of new entries; how many were handled."""
        reply: Any = await self.redis.xreadgroup(
            GROUP, self.name, {STREAM: ">"}, count=self.batch, block=self.block_ms
        )
        entries = [e for _, items in reply or [] for e in items if e[1] is not None]
        return await self._process(entries)

    async def claim(self) -> int:
        # From the start each round: what a claim takes is acknowledged once handled, and an entry
        # claimed but not yet handled is no longer idle, so the next round reaches the ones after it.
        reply = await self.redis.xautoclaim(
            STREAM, GROUP, self.name, min_idle_time=self.claim_idle_ms, start_id="0-0", count=self.batch
        )
        return await self._process(claimed_entries(reply))

    async def run(self) -> None:
        """Until cancelled: reads, and beside them (never holding them up, nor each other) a loop
        that claims dead consumers' entries and one that runs the notifier's sweep (retries, quiet
        hours, lapsed leases): a long sweep of many due notifications must not stall the claims."""
        await self._ready()
        beside = [asyncio.create_task(self._every(self.claim)), asyncio.create_task(self._every(self._due))]
        try:
            await self._read()
        finally:
            await cancel(beside)

    async def _due(self) -> int:
        with context.budget(30.0):
            return await self.notifier.due()

    async def _every(self, work: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: S110 - Redis or PostgreSQL away: the next round tries again
                pass

    async def _read(self) -> None:
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self._ready()
                else:
                    await asyncio.sleep(0.5)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await asyncio.sleep(0.5)  # Redis restarting: the outbox keeps everything meanwhile
            except Exception:
                await asyncio.sleep(0.5)

    async def _ready(self) -> None:
        while True:
            try:
                await ensure_group(self.redis)
                return
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await asyncio.sleep(0.5)
