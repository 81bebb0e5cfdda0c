"""Signed webhooks as the sandbox's event sources send them (the case system, the courier, 12345).

Each event is POSTed as JSON with `X-<Source>-Event-Id`, `X-<Source>-Timestamp` and
`X-<Source>-Signature: sha256=<hex HMAC-SHA256 over "timestamp.body">`, retried on the source's
schedule until a 2xx answers; every attempt (or the drop, when a test asked for one) is a row in the
source's deliveries table, so tests read what was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import asyncpg
import msgspec

RETRY_DELAYS = (0.0, 0.3, 1.0, 2.0, 5.0)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class SignedWebhooks:
    def __init__(
        self,
        source: str,
        table: str,
        secret: str,
        *,
        dropped: Callable[[], bool] = lambda: False,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.prefix = f"X-{source}-"
        self.table = table  # a constant of the caller's, never input
        self.secret = secret
        self.dropped = dropped
        self.retry_delays = tuple(retry_delays)
        self._tasks: set[asyncio.Task[None]] = set()

    async def deliver(self, pool: asyncpg.Pool, url: str, event: dict[str, Any]) -> None:
        record = f"INSERT INTO {self.table} (event_id, attempt, outcome) VALUES ($1, $2, $3)"  # noqa: S608
        if self.dropped():
            await pool.execute(record, event["event_id"], 1, "dropped")
            return
        body = msgspec.json.encode(event)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for attempt, delay in enumerate(self.retry_delays, start=1):
                await asyncio.sleep(delay)
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    f"{self.prefix}Event-Id": event["event_id"],
                    f"{self.prefix}Timestamp": timestamp,
                    f"{self.prefix}Signature": "sha256=" + sign(self.secret, timestamp, body),
                }
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        outcome, ok = f"http_{response.status}", 200 <= response.status < 300
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    outcome, ok = type(exc).__name__, False
                try:
                    await pool.execute(record, event["event_id"], attempt, outcome)
                except (asyncpg.PostgresError, OSError):
                    return  # shutting down
                if ok:
                    return

    def schedule(self, pool: asyncpg.Pool, url: str | None, events: list[dict[str, Any]]) -> None:
        """Deliver each event in the background (the source answers its caller first)."""
        if not url:
            return
        for event in events:
            task = asyncio.create_task(self.deliver(pool, url, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
