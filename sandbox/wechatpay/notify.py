"""Payment and refund notifications (支付通知, 退款通知), delivered the way WeChat Pay delivers them.

Each notification is stored with its exact body (the same `id` and ciphertext on every retry) and is
freshly signed per attempt. A 2xx ends delivery; anything else is retried on WeChat's schedule
(15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h) multiplied by a time factor the control API
sets. State is in PostgreSQL so that a restarted sandbox goes on delivering where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import asyncpg.pool
import msgspec
from litestar import Litestar

from sandbox.wechatpay import keys
from sandbox.wechatpay.keys import aead_encrypt, china_time, seed_dev_merchant, sign_headers

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
SCHEDULE_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1


class Policy(msgspec.Struct, forbid_unknown_fields=True):
    """What happens to notifications created from now on."""

    hold: bool = False  # keep them until `release` (to deliver out of order)
    drop: bool = False  # record them as sent but never send (a lost notification)
    delay_ms: int = 0  # the first attempt waits this long


async def setting(conn: Conn | asyncpg.Pool, name: str, default: Any) -> Any:
    value = await conn.fetchval("SELECT value FROM sandbox.wechatpay_settings WHERE name = $1", name)
    return default if value is None else value


async def put_setting(pool: asyncpg.Pool, name: str, value: Any) -> None:
    await pool.execute(
        """
        INSERT INTO sandbox.wechatpay_settings (name, value) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET value = excluded.value
        """,
        name,
        value,
    )


async def enqueue(
    conn: Conn,
    *,
    mchid: str,
    apiv3_key: str,
    out_trade_no: str,
    out_refund_no: str | None,
    event_type: str,
    summary: str,
    original_type: str,
    plaintext: dict[str, Any],
    notify_url: str,
) -> str:
    """Store a notification in the caller's transaction (it exists if and only if the change does)."""
    nid = str(uuid.uuid4())
    resource = aead_encrypt(apiv3_key, msgspec.json.encode(plaintext), original_type)
    body = {
        "id": nid,
        "create_time": china_time(datetime.now(UTC)),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {**resource, "original_type": original_type},
    }
    policy = msgspec.convert(await setting(conn, "policy", {}), Policy)
    state = "held" if policy.hold else "dropped" if policy.drop else "pending"
    await conn.execute(
        """
        INSERT INTO sandbox.wechatpay_notifications
            (id, mchid, out_trade_no, out_refund_no, event_type, notify_url, body, state, next_attempt_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9)
        """,
        nid,
        mchid,
        out_trade_no,
        out_refund_no,
        event_type,
        notify_url,
        msgspec.json.encode(body).decode(),
        state,
        timedelta(milliseconds=policy.delay_ms),
    )
    if state == "dropped":
        await conn.execute(
            """
            INSERT INTO sandbox.wechatpay_attempts (notification_id, attempt, kind, outcome)
            VALUES ($1, 1, 'drop', 'dropped')
            """,
            nid,
        )
    return nid


class Dispatcher:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int | None]:
        assert self.session is not None
        try:
            async with self.session.post(
                url, data=body, headers={"Content-Type": "application/json", **headers}
            ) as response:
                await response.read()
                return f"http_{response.status}", response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return type(exc).__name__, None

    async def record(
        self, nid: str, attempt: int, kind: str, outcome: str, status: int | None, delay_ms: int | None
    ) -> None:
        assert self.pool is not None
        await self.pool.execute(
            """
            INSERT INTO sandbox.wechatpay_attempts
                (notification_id, attempt, kind, outcome, status, scheduled_delay_ms)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            nid,
            attempt,
            kind,
            outcome,
            status,
            delay_ms,
        )

    async def _attempt(self, row: asyncpg.Record) -> None:
        assert self.pool is not None
        body = row["body"].encode()
        headers = await sign_headers(self.pool, body)
        attempt = row["attempts"] + 1
        delay_ms = row["delay_ms"]
        outcome, status = await self.post(row["notify_url"], body, headers)
        ok = status is not None and 200 <= status < 300
        if ok:
            next_at, state, delay = None, "delivered", None
        elif attempt >= MAX_ATTEMPTS:
            next_at, state, delay = None, "exhausted", None
        else:
            factor = float(await setting(self.pool, "time_factor", 1.0))
            delay = int(SCHEDULE_S[attempt - 1] * factor * 1000)
            next_at, state = datetime.now(UTC) + timedelta(milliseconds=delay), "pending"
        # The attempt and the notification's next step are written together: a crash leaves either
        # both or neither (a send then unrecorded is simply sent again, as WeChat would).
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO sandbox.wechatpay_attempts
                    (notification_id, attempt, kind, outcome, status, scheduled_delay_ms)
                VALUES ($1, $2, 'scheduled', $3, $4, $5)
                """,
                row["id"],
                attempt,
                outcome,
                status,
                delay_ms,
            )
            await conn.execute(
                """
            UPDATE sandbox.wechatpay_notifications
            SET state = CASE WHEN state = 'sending' THEN $2 ELSE state END, attempts = $3,
                next_attempt_at = $4, next_delay_ms = $5,
                first_headers = coalesce(first_headers, $6)
            WHERE id = $1
            """,
                row["id"],
                state,
                attempt,
                next_at,
                delay,
                headers,
            )
        self.wake()

    async def run(self) -> None:
        assert self.pool is not None
        while True:
            self._wake.clear()
            try:
                rows = await self.pool.fetch(
                    """
                    UPDATE sandbox.wechatpay_notifications n SET state = 'sending'
                    FROM (
                        SELECT id FROM sandbox.wechatpay_notifications
                        WHERE state = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at, seq LIMIT 100 FOR UPDATE SKIP LOCKED
                    ) due
                    WHERE n.id = due.id
                    RETURNING n.*, n.next_delay_ms AS delay_ms
                    """
                )
                for row in sorted(rows, key=lambda r: r["seq"]):
                    self.spawn(self._attempt(row))
                wait = await self.pool.fetchval(
                    """
                    SELECT extract(epoch FROM min(next_attempt_at) - now())
                    FROM sandbox.wechatpay_notifications WHERE state = 'pending'
                    """
                )
            except (asyncpg.PostgresError, OSError):
                wait = 1.0
            timeout = 0.5 if wait is None else min(max(float(wait), 0.002), 0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


DISPATCHER = Dispatcher()


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Seed the dev merchant, pick up deliveries a previous process left half way, deliver."""
    pool: asyncpg.Pool = app.state.db
    await seed_dev_merchant(pool)
    # The platform certificate exists before the first answer: concurrent first answers would each
    # make one, and sign with certificates the merchant's listing fetched a moment earlier lacks.
    await keys.current(pool)
    await pool.execute("UPDATE sandbox.wechatpay_notifications SET state = 'pending' WHERE state = 'sending'")
    DISPATCHER.pool = pool
    DISPATCHER.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    runner = asyncio.create_task(DISPATCHER.run())
    try:
        yield
    finally:
        runner.cancel()
        for task in list(DISPATCHER._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await DISPATCHER.session.close()
