"""Control API of WeChat Pay (`/_control/wechatpay/...`): what the resident does in WeChat (pay, fail,
let it expire), refunds finishing, knobs for notifications (hold and release in reverse, drop, delay,
duplicate, tamper, replay, the time factor), certificate rotation, and a read of everything held.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Response, Router, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from sandbox.wechatpay import keys
from sandbox.wechatpay.keys import CHINA, DEV_MCHID
from sandbox.wechatpay.notify import DISPATCHER, Policy, put_setting, setting
from sandbox.wechatpay.routes import FORCED, enqueue_payment, enqueue_refund, set_state


def refused(status: int, error: str, message: str) -> Response[Any]:
    return Response({"error": error, "message": message}, status_code=status)


class MerchantIn(msgspec.Struct, forbid_unknown_fields=True):
    mchid: str
    cert_pem: str
    apiv3_key: str
    appids: list[str]


class PayIn(msgspec.Struct, forbid_unknown_fields=True):
    mchid: str = DEV_MCHID
    openid: str | None = None  # Native/App orders learn the payer only now


class OrderAction(msgspec.Struct, forbid_unknown_fields=True):
    mchid: str = DEV_MCHID


class FactorIn(msgspec.Struct, forbid_unknown_fields=True):
    factor: float


class ErrorsIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Literal["SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANKERROR"]
    count: int = 1


class RotateIn(msgspec.Struct, forbid_unknown_fields=True):
    old_valid_seconds: int = 3600


class DuplicateIn(msgspec.Struct, forbid_unknown_fields=True):
    copies: int = 2


class TamperIn(msgspec.Struct, forbid_unknown_fields=True):
    what: Literal["ciphertext", "signature", "serial"] = "ciphertext"


class ReleaseIn(msgspec.Struct, forbid_unknown_fields=True):
    order: Literal["reverse", "forward"] = "reverse"


@post("/merchants", status_code=201)
async def add_merchant(
    db: NamedDependency[asyncpg.Pool], data: Annotated[MerchantIn, Body()]
) -> dict[str, Any]:
    if len(data.apiv3_key.encode()) != 32:
        raise msgspec.ValidationError("apiv3_key must be 32 bytes")
    serial = keys.serial_of(keys.load_cert(data.cert_pem))
    row = await db.fetchrow(
        """
        INSERT INTO sandbox.wechatpay_merchants (mchid, serial_no, cert_pem, apiv3_key, appids)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (mchid) DO UPDATE SET serial_no = excluded.serial_no, cert_pem = excluded.cert_pem,
            apiv3_key = excluded.apiv3_key, appids = excluded.appids
        RETURNING *
        """,
        data.mchid,
        serial,
        data.cert_pem,
        data.apiv3_key,
        data.appids,
    )
    return keys.merchant_record(row)


async def _locked_order(conn: Any, mchid: str, out_trade_no: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = $2 FOR UPDATE",
        mchid,
        out_trade_no,
    )
    return row


def _transaction_id() -> str:
    return "42000" + datetime.now(CHINA).strftime("%Y%m%d") + f"{secrets.randbelow(10**15):015d}"


@post("/orders/{out_trade_no:str}/pay", status_code=200)
async def pay(
    db: NamedDependency[asyncpg.Pool], out_trade_no: FromPath[str], data: Annotated[PayIn, Body()]
) -> Response[Any]:
    """The resident pays in WeChat: SUCCESS, a transaction id, a success time and a notification."""
    async with db.acquire() as conn:
        async with conn.transaction():
            row = await _locked_order(conn, data.mchid, out_trade_no)
            if row is None:
                return refused(404, "not_found", out_trade_no)
            if row["combine_out_trade_no"] is not None:
                return refused(409, "part_of_combine", f"pay the combine {row['combine_out_trade_no']}")
            if row["trade_state"] not in {"NOTPAY", "USERPAYING"}:
                return refused(409, "not_payable", f"order is {row['trade_state']}")
            if row["time_expire"] is not None and row["time_expire"] <= datetime.now(UTC):
                return refused(409, "expired", "time_expire has passed")
            row = await conn.fetchrow(
                """
                UPDATE sandbox.wechatpay_orders
                SET trade_state = 'SUCCESS', trade_state_desc = '支付成功', transaction_id = $3,
                    success_time = now(), payer_total = total, payer_openid = coalesce(payer_openid, $4)
                WHERE mchid = $1 AND out_trade_no = $2 RETURNING *
                """,
                data.mchid,
                out_trade_no,
                _transaction_id(),
                data.openid or "o" + secrets.token_urlsafe(20),
            )
            assert row is not None
            apiv3_key = await conn.fetchval(
                "SELECT apiv3_key FROM sandbox.wechatpay_merchants WHERE mchid = $1", data.mchid
            )
            nid = await enqueue_payment(conn, row, apiv3_key)
        DISPATCHER.wake()
        return Response({"transaction_id": row["transaction_id"], "notification_id": nid})


async def _move(db: asyncpg.Pool, mchid: str, out_trade_no: str, allowed: set[str], to: str) -> Response[Any]:
    async with db.acquire() as conn, conn.transaction():
        row = await _locked_order(conn, mchid, out_trade_no)
        if row is None:
            return refused(404, "not_found", out_trade_no)
        if row["trade_state"] not in allowed:
            return refused(409, "bad_state", f"order is {row['trade_state']}")
        await set_state(conn, row, to)
    return Response({"out_trade_no": out_trade_no, "trade_state": to})


@post("/orders/{out_trade_no:str}/fail", status_code=200)
async def fail(
    db: NamedDependency[asyncpg.Pool], out_trade_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    """The payment fails in WeChat (e.g. the bank refused): PAYERROR, no notification (WeChat sends none)."""
    return await _move(db, data.mchid, out_trade_no, {"NOTPAY", "USERPAYING"}, "PAYERROR")


@post("/orders/{out_trade_no:str}/userpaying", status_code=200)
async def userpaying(
    db: NamedDependency[asyncpg.Pool], out_trade_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    return await _move(db, data.mchid, out_trade_no, {"NOTPAY"}, "USERPAYING")


@post("/orders/{out_trade_no:str}/expire", status_code=200)
async def expire(
    db: NamedDependency[asyncpg.Pool], out_trade_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    """time_expire passes: the order can no longer be paid; it stays NOTPAY until someone closes it."""
    done = await db.execute(
        """
        UPDATE sandbox.wechatpay_orders SET time_expire = now() - interval '1 second'
        WHERE mchid = $1 AND out_trade_no = $2 AND trade_state IN ('NOTPAY', 'USERPAYING')
        """,
        data.mchid,
        out_trade_no,
    )
    if done.endswith(" 0"):
        return refused(409, "bad_state", "no unpaid order with that number")
    return Response({"out_trade_no": out_trade_no, "trade_state": "NOTPAY", "expired": True})


@post("/orders/{out_trade_no:str}/close", status_code=200)
async def close(
    db: NamedDependency[asyncpg.Pool], out_trade_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    return await _move(db, data.mchid, out_trade_no, {"NOTPAY", "USERPAYING", "PAYERROR"}, "CLOSED")


async def _finish_refund(db: asyncpg.Pool, mchid: str, out_refund_no: str, status: str) -> Response[Any]:
    async with db.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE sandbox.wechatpay_refunds
                SET status = $3, success_time = CASE WHEN $3 = 'SUCCESS' THEN now() END
                WHERE mchid = $1 AND out_refund_no = $2 AND status = 'PROCESSING' RETURNING *
                """,
                mchid,
                out_refund_no,
                status,
            )
            if row is None:
                return refused(409, "bad_state", "no processing refund with that number")
            apiv3_key = await conn.fetchval(
                "SELECT apiv3_key FROM sandbox.wechatpay_merchants WHERE mchid = $1", mchid
            )
            nid = await enqueue_refund(conn, row, apiv3_key)
        DISPATCHER.wake()
        return Response({"out_refund_no": out_refund_no, "status": status, "notification_id": nid})


@post("/refunds/{out_refund_no:str}/success", status_code=200)
async def refund_success(
    db: NamedDependency[asyncpg.Pool], out_refund_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    return await _finish_refund(db, data.mchid, out_refund_no, "SUCCESS")


@post("/refunds/{out_refund_no:str}/abnormal", status_code=200)
async def refund_abnormal(
    db: NamedDependency[asyncpg.Pool], out_refund_no: FromPath[str], data: Annotated[OrderAction, Body()]
) -> Response[Any]:
    return await _finish_refund(db, data.mchid, out_refund_no, "ABNORMAL")


@put("/time-factor")
async def time_factor(
    db: NamedDependency[asyncpg.Pool], data: Annotated[FactorIn, Body()]
) -> dict[str, float]:
    if not 0 < data.factor <= 1:
        raise msgspec.ValidationError("factor must be within (0, 1]")
    await put_setting(db, "time_factor", data.factor)
    return {"factor": data.factor}


@put("/policy")
async def set_policy(db: NamedDependency[asyncpg.Pool], data: Annotated[Policy, Body()]) -> dict[str, Any]:
    await put_setting(db, "policy", msgspec.to_builtins(data))
    return msgspec.to_builtins(data)  # type: ignore[no-any-return]


@put("/errors")
async def force_errors(data: Annotated[ErrorsIn, Body()]) -> dict[str, Any]:
    FORCED.code, FORCED.remaining = data.code, data.count
    return {"code": data.code, "count": data.count}


@post("/certificates/rotate", status_code=200)
async def rotate(db: NamedDependency[asyncpg.Pool], data: Annotated[RotateIn, Body()]) -> dict[str, Any]:
    """A new platform certificate signs from now on; the old one stays listed (and valid) a while."""
    serial = await keys.rotate(db, timedelta(seconds=data.old_valid_seconds))
    return {"serial_no": serial, "listed": [r["serial_no"] for r in await keys.listed(db)]}


@get("/state")
async def state(
    db: NamedDependency[asyncpg.Pool], mchid: Annotated[str | None, QueryParameter()] = None
) -> dict[str, Any]:
    """Everything held, for tests to compare with the BFF's ledger (fen)."""
    orders = await db.fetch(
        """
        SELECT mchid, out_trade_no, trade_type, trade_state, total, payer_total, transaction_id, success_time,
               time_expire
        FROM sandbox.wechatpay_orders WHERE $1::text IS NULL OR mchid = $1 ORDER BY created_at
        """,
        mchid,
    )
    refunds = await db.fetch(
        """
        SELECT mchid, out_refund_no, out_trade_no, refund_id, refund, total, status
        FROM sandbox.wechatpay_refunds WHERE $1::text IS NULL OR mchid = $1 ORDER BY created_at
        """,
        mchid,
    )
    sums = await db.fetch(
        """
        SELECT m.mchid,
               (SELECT coalesce(sum(payer_total), 0) FROM sandbox.wechatpay_orders o
                WHERE o.mchid = m.mchid AND o.transaction_id IS NOT NULL)::bigint AS paid_fen,
               (SELECT coalesce(sum(refund), 0) FROM sandbox.wechatpay_refunds r
                WHERE r.mchid = m.mchid AND r.status = 'SUCCESS')::bigint AS refunded_fen,
               (SELECT coalesce(sum(refund), 0) FROM sandbox.wechatpay_refunds r
                WHERE r.mchid = m.mchid AND r.status = 'PROCESSING')::bigint AS refunding_fen
        FROM sandbox.wechatpay_merchants m WHERE $1::text IS NULL OR m.mchid = $1 ORDER BY m.mchid
        """,
        mchid,
    )

    def times(row: asyncpg.Record) -> dict[str, Any]:
        out = dict(row)
        for name in ("success_time", "time_expire"):
            if out.get(name) is not None:
                out[name] = out[name].isoformat()
        return out

    return {
        "orders": [times(r) for r in orders],
        "refunds": [dict(r) for r in refunds],
        "sums": {r["mchid"]: {k: r[k] for k in ("paid_fen", "refunded_fen", "refunding_fen")} for r in sums},
    }


@get("/notifications")
async def notifications(
    db: NamedDependency[asyncpg.Pool], out_trade_no: Annotated[str | None, QueryParameter()] = None
) -> dict[str, Any]:
    """Every notification with every delivery attempt and its outcome, oldest first."""
    rows = await db.fetch(
        """
        SELECT * FROM sandbox.wechatpay_notifications
        WHERE $1::text IS NULL OR out_trade_no = $1 ORDER BY seq
        """,
        out_trade_no,
    )
    attempts = await db.fetch(
        """
        SELECT a.* FROM sandbox.wechatpay_attempts a
        JOIN sandbox.wechatpay_notifications n ON n.id = a.notification_id
        WHERE $1::text IS NULL OR n.out_trade_no = $1 ORDER BY a.id
        """,
        out_trade_no,
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_id.setdefault(a["notification_id"], []).append(
            {
                "attempt": a["attempt"],
                "kind": a["kind"],
                "outcome": a["outcome"],
                "status": a["status"],
                "scheduled_delay_ms": a["scheduled_delay_ms"],
                "at": a["at"].isoformat(),
            }
        )
    return {
        "notifications": [
            {
                "id": r["id"],
                "mchid": r["mchid"],
                "out_trade_no": r["out_trade_no"],
                "out_refund_no": r["out_refund_no"],
                "event_type": r["event_type"],
                "notify_url": r["notify_url"],
                "state": r["state"],
                "attempts": by_id.get(r["id"], []),
            }
            for r in rows
        ]
    }


async def _notification(db: asyncpg.Pool, nid: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM sandbox.wechatpay_notifications WHERE id = $1", nid
    )
    return row


async def _extra(
    db: asyncpg.Pool, row: asyncpg.Record, kind: str, body: bytes, headers: dict[str, str]
) -> int | None:
    outcome, status = await DISPATCHER.post(row["notify_url"], body, headers)
    await DISPATCHER.record(row["id"], 0, kind, outcome, status, None)
    return status


async def _delivered(db: asyncpg.Pool, nid: str) -> None:
    await db.execute(
        """
        UPDATE sandbox.wechatpay_notifications SET state = 'delivered', next_attempt_at = NULL
        WHERE id = $1 AND state IN ('pending', 'held', 'dropped')
        """,
        nid,
    )


@post("/notifications/{nid:str}/duplicate", status_code=200)
async def duplicate(
    db: NamedDependency[asyncpg.Pool], nid: FromPath[str], data: Annotated[DuplicateIn, Body()]
) -> Response[Any]:
    """N copies at once (the same id and ciphertext, each freshly signed), the way WeChat repeats."""
    row = await _notification(db, nid)
    if row is None:
        return refused(404, "not_found", nid)
    body = row["body"].encode()
    headers = [await keys.sign_headers(db, body) for _ in range(data.copies)]
    statuses = await asyncio.gather(*(_extra(db, row, "duplicate", body, h) for h in headers))
    if any(s is not None and 200 <= s < 300 for s in statuses):
        await _delivered(db, nid)
    return Response({"statuses": list(statuses)})


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


@post("/notifications/{nid:str}/tamper", status_code=200)
async def tamper(
    db: NamedDependency[asyncpg.Pool], nid: FromPath[str], data: Annotated[TamperIn, Body()]
) -> Response[Any]:
    """One forged copy: the ciphertext altered (and re-signed, so only decryption catches it), the
    signature altered, or signed by an unknown key under an unknown serial. Normal delivery goes on."""
    row = await _notification(db, nid)
    if row is None:
        return refused(404, "not_found", nid)
    doc = msgspec.json.decode(row["body"].encode())
    if data.what == "ciphertext":
        doc["resource"]["ciphertext"] = _flip(doc["resource"]["ciphertext"])
    body = msgspec.json.encode(doc)
    headers = await keys.sign_headers(db, body)
    if data.what == "signature":
        headers["Wechatpay-Signature"] = _flip(headers["Wechatpay-Signature"])
    elif data.what == "serial":
        headers["Wechatpay-Serial"] = secrets.token_hex(20).upper()
    status = await _extra(db, row, f"tamper_{data.what}", body, headers)
    return Response({"status": status})


@post("/notifications/{nid:str}/replay", status_code=200)
async def replay(db: NamedDependency[asyncpg.Pool], nid: FromPath[str]) -> Response[Any]:
    """Send again exactly what the first attempt sent: the same id, nonce, timestamp and signature."""
    row = await _notification(db, nid)
    if row is None:
        return refused(404, "not_found", nid)
    if row["first_headers"] is None:
        return refused(409, "never_sent", "nothing was sent yet to replay")
    status = await _extra(db, row, "replay", row["body"].encode(), dict(row["first_headers"]))
    return Response({"status": status, "timestamp": row["first_headers"]["Wechatpay-Timestamp"]})


@post("/notifications/{nid:str}/resend", status_code=200)
async def resend(db: NamedDependency[asyncpg.Pool], nid: FromPath[str]) -> Response[Any]:
    """A replay signed now but with an old timestamp (as if held in a network for `seconds`)."""
    row = await _notification(db, nid)
    if row is None:
        return refused(404, "not_found", nid)
    body = row["body"].encode()
    old = int(datetime.now(UTC).timestamp()) - 600
    status = await _extra(db, row, "stale", body, await keys.sign_headers(db, body, timestamp=old))
    return Response({"status": status, "timestamp": str(old)})


@post("/notifications/release", status_code=200)
async def release(db: NamedDependency[asyncpg.Pool], data: Annotated[ReleaseIn, Body()]) -> Response[Any]:
    """Send every held notification once, one after the other (reverse = newest first); those not
    answered 2xx go on to the retry schedule."""
    rows = await db.fetch("SELECT * FROM sandbox.wechatpay_notifications WHERE state = 'held' ORDER BY seq")
    if data.order == "reverse":
        rows = rows[::-1]
    factor = float(await setting(db, "time_factor", 1.0))
    sent = []
    for row in rows:
        body = row["body"].encode()
        headers = await keys.sign_headers(db, body)
        outcome, status = await DISPATCHER.post(row["notify_url"], body, headers)
        await DISPATCHER.record(row["id"], 1, "release", outcome, status, None)
        ok = status is not None and 200 <= status < 300
        await db.execute(
            """
            UPDATE sandbox.wechatpay_notifications
            SET state = $2, attempts = 1, first_headers = $3, next_attempt_at = now() + $4, next_delay_ms = $5
            WHERE id = $1
            """,
            row["id"],
            "delivered" if ok else "pending",
            headers,
            timedelta(milliseconds=15_000 * factor),
            int(15_000 * factor),
        )
        sent.append({"id": row["id"], "status": status})
    DISPATCHER.wake()
    return Response({"sent": sent})


router = Router(
    path="/_control/wechatpay",
    route_handlers=[
        add_merchant,
        pay,
        fail,
        userpaying,
        expire,
        close,
        refund_success,
        refund_abnormal,
        time_factor,
        set_policy,
        force_errors,
        rotate,
        state,
        notifications,
        duplicate,
        tamper,
        replay,
        resend,
        release,
    ],
)
