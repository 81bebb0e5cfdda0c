"""The push gateway's API: `POST /pushgw/v1/messages`, signed receipts to the caller's callback_url.

Authentication: `X-Pushgw-App-Key` and `X-Pushgw-Signature: sha256=<hex HMAC-SHA256 of
"{X-Pushgw-Timestamp}.{raw body}" under the app secret>`; the timestamp (unix seconds) must be within
5 minutes. `request_id` is the send key: once a request_id was accepted, a repeat answers the same
message_id and sends nothing again (refusals are not kept: a retry is judged afresh).

Errors are `{"code", "message"}`: 400 INVALID_ARGUMENT / INVALID_TOKEN, 401 UNAUTHENTICATED,
404 UNREGISTERED, 413 PAYLOAD_TOO_LARGE, 429 QUOTA_EXCEEDED and 503 UNAVAILABLE (both with
Retry-After), 500 INTERNAL. Only 429, 500 and 503 are worth a retry.

After acceptance the device delivers (or not) in a background task, then a receipt
`{message_id, request_id, status: delivered|failed, reason, at}` is POSTed to callback_url, signed
the same way (`X-Pushgw-Timestamp`, `X-Pushgw-Signature`), retried on any non-2xx answer or timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import asyncpg
import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency

APP_KEY = os.environ.get("SANDBOX_PUSHGW_APP_KEY", "sandbox-pushgw-app")
SECRET = os.environ.get("SANDBOX_PUSHGW_SECRET", "sandbox-pushgw-secret")
MAX_SKEW_S = 300
# APNs' limit for a notification payload; the vendors behind the gateway allow no more in practice.
MAX_PAYLOAD_BYTES = 4096
RECEIPT_DELAYS = (0.0, 0.3, 1.0, 2.0, 5.0)
RECEIPT_TIMEOUT_S = 2.0
STATUS_OF = {
    "INVALID_ARGUMENT": 400,
    "INVALID_TOKEN": 400,
    "UNAUTHENTICATED": 401,
    "UNREGISTERED": 404,
    "PAYLOAD_TOO_LARGE": 413,
    "QUOTA_EXCEEDED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}
TOKEN_SHAPES = {
    "ios": re.compile(r"[0-9a-f]{64}"),  # an APNs device token, hex
    "android": re.compile(r"[A-Za-z0-9_:\-]{32,256}"),
    "harmony": re.compile(r"[A-Za-z0-9_:\-]{32,256}"),
}
_tasks: set[asyncio.Task[None]] = set()


class PushIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    token: str
    platform: Literal["ios", "android", "harmony"]
    title: str
    body: str
    data: dict[str, Any] = {}
    callback_url: str | None = None


class PushState:
    """In-process knobs: failures forced on the next sends or deliveries, receipts to drop, a rate."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.forced: deque[str] = deque()
        self.delivery_failures: deque[str] = deque()
        self.receipt_drops = 0
        self.per_second = 0  # 0: no quota
        self.delivery_delay_ms = 20
        self._window: deque[float] = deque()

    def over_quota(self) -> bool:
        if not self.per_second:
            return False
        now = time.monotonic()
        while self._window and self._window[0] < now - 1:
            self._window.popleft()
        if len(self._window) >= self.per_second:
            return True
        self._window.append(now)
        return False


STATE = PushState()


def sign(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def refusal(code: str, message: str) -> Response[Any]:
    headers = {"Retry-After": "1"} if code in {"QUOTA_EXCEEDED", "UNAVAILABLE"} else {}
    return Response({"code": code, "message": message}, status_code=STATUS_OF[code], headers=headers)


async def _record(
    db: asyncpg.Pool,
    request_id: str | None,
    token: str | None,
    status: int,
    code: str | None = None,
    message_id: str | None = None,
    duplicate: bool = False,
) -> None:
    await db.execute(
        """
        INSERT INTO sandbox.pushgw_requests (request_id, token, status, code, message_id, duplicate)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        request_id,
        token,
        status,
        code,
        message_id,
        duplicate,
    )


def _authenticated(request: Request[Any, Any, Any], raw: bytes) -> str | None:
    """Why the request is not from the app, or None."""
    if request.headers.get("x-pushgw-app-key") != APP_KEY:
        return "unknown app key"
    timestamp = request.headers.get("x-pushgw-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        return "timestamp missing or more than 5 minutes off"
    given = request.headers.get("x-pushgw-signature", "").removeprefix("sha256=")
    if not hmac.compare_digest(given, sign(timestamp, raw)):
        return "signature mismatch"
    return None


@post("/v1/messages", status_code=200)
async def send_message(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    raw = await request.body()
    why = _authenticated(request, raw)
    if why:
        await _record(db, None, None, 401, "UNAUTHENTICATED")
        return refusal("UNAUTHENTICATED", why)
    try:
        push = msgspec.json.decode(raw, type=PushIn)
    except msgspec.DecodeError as exc:
        await _record(db, None, None, 400, "INVALID_ARGUMENT")
        return refusal("INVALID_ARGUMENT", str(exc))

    async def refuse(code: str, message: str) -> Response[Any]:
        await _record(db, push.request_id, push.token, STATUS_OF[code], code)
        return refusal(code, message)

    seen = await db.fetchval(
        "SELECT message_id FROM sandbox.pushgw_messages WHERE request_id = $1", push.request_id
    )
    if seen is not None:
        await _record(db, push.request_id, push.token, 200, None, seen, duplicate=True)
        return Response({"message_id": seen})
    if STATE.forced:
        code = STATE.forced.popleft()
        return await refuse(code, "injected failure")
    if not push.request_id or len(push.request_id) > 128:
        return await refuse("INVALID_ARGUMENT", "request_id must be 1 to 128 characters")
    if not push.title or not push.body:
        return await refuse("INVALID_ARGUMENT", "title and body are required")
    if not TOKEN_SHAPES[push.platform].fullmatch(push.token):
        return await refuse("INVALID_TOKEN", f"not a {push.platform} device token")
    payload = msgspec.json.encode({"title": push.title, "body": push.body, "data": push.data})
    if len(payload) > MAX_PAYLOAD_BYTES:
        return await refuse(
            "PAYLOAD_TOO_LARGE", f"payload is {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}"
        )
    device = await db.fetchrow(
        "SELECT platform, unregistered_at FROM sandbox.pushgw_devices WHERE token = $1", push.token
    )
    if device is None or device["unregistered_at"] is not None:
        return await refuse("UNREGISTERED", "the token is not registered (app uninstalled or token rotated)")
    if device["platform"] != push.platform:
        return await refuse("INVALID_TOKEN", f"the token belongs to {device['platform']}")
    if STATE.over_quota():
        return await refuse("QUOTA_EXCEEDED", "too many messages for this app, slow down")
    message_id = "msg_" + uuid.uuid4().hex
    # Concurrent repeats of one request_id: the unique key lets exactly one insert win.
    stored = await db.fetchval(
        """
        INSERT INTO sandbox.pushgw_messages
            (message_id, request_id, token, platform, title, body, data, callback_url)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (request_id) DO NOTHING RETURNING message_id
        """,
        message_id,
        push.request_id,
        push.token,
        push.platform,
        push.title,
        push.body,
        push.data,
        push.callback_url,
    )
    if stored is None:
        seen = await db.fetchval(
            "SELECT message_id FROM sandbox.pushgw_messages WHERE request_id = $1", push.request_id
        )
        await _record(db, push.request_id, push.token, 200, None, seen, duplicate=True)
        return Response({"message_id": seen})
    await _record(db, push.request_id, push.token, 200, None, message_id)
    task = asyncio.create_task(_deliver(db, message_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return Response({"message_id": message_id})


async def _deliver(pool: asyncpg.Pool, message_id: str) -> None:
    """The device side: deliver after a short delay, then tell the caller."""
    await asyncio.sleep(STATE.delivery_delay_ms / 1000)
    try:
        row = await pool.fetchrow(
            """
            SELECT m.*, d.unregistered_at FROM sandbox.pushgw_messages m
            LEFT JOIN sandbox.pushgw_devices d USING (token) WHERE m.message_id = $1
            """,
            message_id,
        )
        if row is None:
            return  # reset through the control API meanwhile
        if row["unregistered_at"] is not None:
            status, reason = "failed", "UNREGISTERED"
        elif STATE.delivery_failures:
            status, reason = "failed", STATE.delivery_failures.popleft()
        else:
            status, reason = "delivered", None
        at = datetime.now(UTC)
        await pool.execute(
            "UPDATE sandbox.pushgw_messages SET status = $2, reason = $3, finished_at = $4 WHERE message_id = $1",
            message_id,
            status,
            reason,
            at,
        )
    except (asyncpg.PostgresError, OSError):
        return  # shutting down
    if not row["callback_url"]:
        return
    if STATE.receipt_drops:
        STATE.receipt_drops -= 1
        await _attempt(pool, message_id, 0, "dropped")
        return
    receipt = {
        "message_id": message_id,
        "request_id": row["request_id"],
        "status": status,
        "reason": reason,
        "at": at.isoformat(),
    }
    await post_receipt(pool, row["callback_url"], message_id, msgspec.json.encode(receipt))


async def _attempt(pool: asyncpg.Pool, message_id: str, attempt: int, outcome: str) -> bool:
    try:
        await pool.execute(
            "INSERT INTO sandbox.pushgw_receipts (message_id, attempt, outcome) VALUES ($1, $2, $3)",
            message_id,
            attempt,
            outcome,
        )
    except (asyncpg.PostgresError, OSError):
        return False  # shutting down
    return True


async def post_receipt(pool: asyncpg.Pool, url: str, message_id: str, body: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=RECEIPT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt, delay in enumerate(RECEIPT_DELAYS, start=1):
            await asyncio.sleep(delay)
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Pushgw-Timestamp": timestamp,
                "X-Pushgw-Signature": "sha256=" + sign(timestamp, body),
            }
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    outcome, ok = f"http_{response.status}", 200 <= response.status < 300
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome, ok = type(exc).__name__, False
            if not await _attempt(pool, message_id, attempt, outcome) or ok:
                return


router = Router(path="/pushgw", route_handlers=[send_message])
