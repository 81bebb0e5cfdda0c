"""WeChat Pay API v3, the merchant side of the wire (base URL `{sandbox}/wechatpay`).

Every request must carry the merchant's `Authorization: WECHATPAY2-SHA256-RSA2048 ...` signature over
`METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`, where PATH is the real v3 path (`/v3/...`, i.e. without
the `/wechatpay` prefix; the prefixed path is accepted too). Every answer is signed with the platform
key (`Wechatpay-Serial/-Signature/-Timestamp/-Nonce` over `timestamp\\nnonce\\nbody\\n`). Errors are
`{"code", "message"}` with WeChat's statuses. Money is integer fen throughout.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from sandbox.wechatpay import keys
from sandbox.wechatpay.keys import CHINA, china_time
from sandbox.wechatpay.notify import DISPATCHER, Conn, enqueue

PREFIX = "/wechatpay"
MAX_SKEW_S = 300
MAX_PARTIAL_REFUNDS = 50
_OUT_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
TRADE_DESC = {
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "NOTPAY": "未支付",
    "CLOSED": "已关闭",
    "REVOKED": "已撤销",
    "USERPAYING": "用户支付中",
    "PAYERROR": "支付失败",
}


class ForcedErrors:
    """Answers the control API asks for next (`SYSTEM_ERROR`, `FREQUENCY_LIMITED`), WeChat-shaped."""

    def __init__(self) -> None:
        self.code: str | None = None
        self.remaining = 0


FORCED = ForcedErrors()
_FORCED_STATUS = {"SYSTEM_ERROR": 500, "FREQUENCY_LIMITED": 429, "BANKERROR": 500}


class Amount(msgspec.Struct):
    total: int
    currency: str = "CNY"


class Payer(msgspec.Struct):
    openid: str


class PrepayIn(msgspec.Struct):
    appid: str
    mchid: str
    description: str
    out_trade_no: str
    notify_url: str
    amount: Amount
    time_expire: str | None = None
    attach: str | None = None
    payer: Payer | None = None
    goods_tag: str | None = None
    scene_info: dict[str, Any] | None = None


class RefundAmount(msgspec.Struct):
    refund: int
    total: int
    currency: str = "CNY"


class RefundIn(msgspec.Struct):
    out_refund_no: str
    amount: RefundAmount
    out_trade_no: str | None = None
    transaction_id: str | None = None
    reason: str | None = None
    notify_url: str | None = None
    funds_account: str | None = None


class CloseIn(msgspec.Struct):
    mchid: str


async def signed(db: asyncpg.Pool, status: int, payload: Any = None) -> Response[bytes]:
    body = b"" if payload is None else msgspec.json.encode(payload)
    headers = await keys.sign_headers(db, body)
    headers["Request-ID"] = f"08{secrets.token_hex(14).upper()}"
    return Response(
        body,
        status_code=status,
        headers=headers,
        media_type="application/json" if body else "text/plain",
    )


async def error(db: asyncpg.Pool, status: int, code: str, message: str) -> Response[bytes]:
    return await signed(db, status, {"code": code, "message": message})


async def authenticate(db: asyncpg.Pool, request: Request[Any, Any, Any], body: bytes) -> Any:
    """The merchant row for a correctly signed request, or the signed error answer."""
    if FORCED.remaining > 0 and FORCED.code is not None:
        FORCED.remaining -= 1
        return await error(db, _FORCED_STATUS.get(FORCED.code, 500), FORCED.code, "系统繁忙，请稍后重试")
    fields = keys.parse_authorization(request.headers.get("authorization", ""))
    if fields is None:
        return await error(db, 401, "SIGN_ERROR", "Authorization 头缺失或格式错误")
    merchant = await db.fetchrow(
        "SELECT * FROM sandbox.wechatpay_merchants WHERE mchid = $1", fields["mchid"]
    )
    if merchant is None:
        return await error(db, 401, "SIGN_ERROR", "商户号不存在")
    if fields["serial_no"].upper() != merchant["serial_no"]:
        return await error(db, 401, "SIGN_ERROR", "商户证书序列号有误")
    try:
        ts = int(fields["timestamp"])
    except ValueError:
        return await error(db, 401, "SIGN_ERROR", "时间戳格式错误")
    if abs(datetime.now(UTC).timestamp() - ts) > MAX_SKEW_S:
        return await error(db, 401, "SIGN_ERROR", "请求已过期")
    path = request.url.path
    query = request.url.query
    candidates = [path] + ([path[len(PREFIX) :]] if path.startswith(PREFIX + "/") else [])
    cert = keys.load_cert(merchant["cert_pem"])
    for candidate in candidates:
        target = candidate + (f"?{query}" if query else "")
        message = f"{request.method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n".encode()
        if keys.rsa_verify(cert, message + body + b"\n", fields["signature"]):
            return merchant
    return await error(db, 401, "SIGN_ERROR", "签名错误")


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        return str(exc)


def _parse_time(value: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def order_json(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {
        "appid": row["appid"],
        "mchid": row["mchid"],
        "out_trade_no": row["out_trade_no"],
        "trade_state": row["trade_state"],
        "trade_state_desc": row["trade_state_desc"],
        "attach": row["request"].get("attach") or "",
        "amount": {"total": row["total"], "currency": row["currency"], "payer_currency": row["currency"]},
    }
    if row["transaction_id"] is not None:
        out["transaction_id"] = row["transaction_id"]
        out["trade_type"] = row["trade_type"]
        out["bank_type"] = "OTHERS"
        out["success_time"] = china_time(row["success_time"])
        out["payer"] = {"openid": row["payer_openid"]}
        out["amount"]["payer_total"] = row["payer_total"]
    return out


def refund_json(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {
        "refund_id": row["refund_id"],
        "out_refund_no": row["out_refund_no"],
        "transaction_id": row["transaction_id"],
        "out_trade_no": row["out_trade_no"],
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": china_time(row["created_at"]),
        "status": row["status"],
        "funds_account": "AVAILABLE",
        "amount": {
            "total": row["total"],
            "refund": row["refund"],
            "payer_total": row["total"],
            "payer_refund": row["refund"],
            "settlement_total": row["total"],
            "settlement_refund": row["refund"],
            "discount_refund": 0,
            "currency": "CNY",
            "from": [],
        },
        "promotion_detail": [],
    }
    if row["success_time"] is not None:
        out["success_time"] = china_time(row["success_time"])
    return out


def _prepay_id() -> str:
    return "wx" + datetime.now(CHINA).strftime("%d%H%M%S") + secrets.token_hex(13)


async def _prepay(db: asyncpg.Pool, request: Request[Any, Any, Any], trade_type: str) -> Response[bytes]:
    body = await request.body()
    merchant = await authenticate(db, request, body)
    if isinstance(merchant, Response):
        return merchant
    data = _decode(body, PrepayIn)
    if isinstance(data, str):
        return await error(db, 400, "PARAM_ERROR", f"输入源“/body”映射到值字段失败: {data}")
    if data.mchid != merchant["mchid"]:
        return await error(db, 403, "NO_AUTH", "请求的商户号与签名的商户号不一致")
    if data.appid not in merchant["appids"]:
        return await error(db, 400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
    if not _OUT_NO.match(data.out_trade_no):
        return await error(db, 400, "PARAM_ERROR", "out_trade_no 格式错误（6-32 位字母、数字、_-|*）")
    if not 1 <= len(data.description) <= 127:
        return await error(db, 400, "PARAM_ERROR", "description 长度应为 1-127")
    if data.amount.total < 1 or data.amount.currency != "CNY":
        return await error(db, 400, "PARAM_ERROR", "amount.total 至少 1 分，currency 只能为 CNY")
    if not data.notify_url.startswith(("http://", "https://")):
        return await error(db, 400, "PARAM_ERROR", "notify_url 格式错误")
    if trade_type == "JSAPI" and (data.payer is None or not data.payer.openid):
        return await error(db, 400, "PARAM_ERROR", "JSAPI 支付必须传 payer.openid")
    expire: datetime | None = None
    if data.time_expire is not None:
        expire = _parse_time(data.time_expire)
        if expire is None:
            return await error(db, 400, "PARAM_ERROR", "time_expire 不是 RFC 3339 格式")
    request_key = {
        "trade_type": trade_type,
        "appid": data.appid,
        "description": data.description,
        "amount": data.amount.total,
        "openid": data.payer.openid if data.payer else None,
        "attach": data.attach,
    }
    async with db.acquire() as conn, conn.transaction():
        # Concurrent first requests for one out_trade_no: FOR UPDATE locks nothing yet, so take a
        # lock on the number itself (two inserts would otherwise race into a unique violation).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('wxpay:order:' || $1 || ':' || $2))",
            data.mchid,
            data.out_trade_no,
        )
        row = await conn.fetchrow(
            "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = $2 FOR UPDATE",
            data.mchid,
            data.out_trade_no,
        )
        if row is None:
            prepay_id = _prepay_id() if trade_type != "NATIVE" else None
            code_url = (
                f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}" if trade_type == "NATIVE" else None
            )
            await conn.execute(
                """
                INSERT INTO sandbox.wechatpay_orders
                    (mchid, out_trade_no, appid, trade_type, description, notify_url, total, currency,
                     payer_openid, time_expire, request, prepay_id, code_url, trade_state, trade_state_desc)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'NOTPAY', $14)
                """,
                data.mchid,
                data.out_trade_no,
                data.appid,
                trade_type,
                data.description,
                data.notify_url,
                data.amount.total,
                data.amount.currency,
                data.payer.openid if data.payer else None,
                expire,
                request_key,
                prepay_id,
                code_url,
                TRADE_DESC["NOTPAY"],
            )
        else:
            if row["trade_state"] in {"SUCCESS", "REFUND"}:
                return await error(db, 400, "ORDERPAID", "该订单已支付")
            if row["trade_state"] in {"CLOSED", "REVOKED"}:
                return await error(db, 400, "ORDER_CLOSED", "该订单已关闭")
            if row["request"] != request_key:
                return await error(db, 400, "INVALID_REQUEST", "201 商户订单号重复（参数与首次请求不一致）")
            prepay_id, code_url = row["prepay_id"], row["code_url"]
    return await signed(
        db, 200, {"code_url": code_url} if trade_type == "NATIVE" else {"prepay_id": prepay_id}
    )


@post("/v3/pay/transactions/jsapi", status_code=200)
async def prepay_jsapi(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _prepay(db, request, "JSAPI")


@post("/v3/pay/transactions/app", status_code=200)
async def prepay_app(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _prepay(db, request, "APP")


@post("/v3/pay/transactions/native", status_code=200)
async def prepay_native(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    return await _prepay(db, request, "NATIVE")


async def _query(
    db: asyncpg.Pool, request: Request[Any, Any, Any], column: str, value: str
) -> Response[bytes]:
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    mchid = request.query_params.get("mchid")
    if not mchid:
        return await error(db, 400, "PARAM_ERROR", "缺少 mchid")
    if mchid != merchant["mchid"]:
        return await error(db, 403, "NO_AUTH", "请求的商户号与签名的商户号不一致")
    # Two fixed statements, one per key (the column name never comes from the request).
    sql = {
        "out_trade_no": "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = $2",
        "transaction_id": "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND transaction_id = $2",
    }[column]
    row = await db.fetchrow(sql, mchid, value)
    if row is None:
        return await error(db, 404, "ORDER_NOT_EXIST", "订单不存在")
    return await signed(db, 200, order_json(row))


@get("/v3/pay/transactions/out-trade-no/{out_trade_no:str}")
async def query_order(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], out_trade_no: FromPath[str]
) -> Response[bytes]:
    return await _query(db, request, "out_trade_no", out_trade_no)


@get("/v3/pay/transactions/id/{transaction_id:str}")
async def query_transaction(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], transaction_id: FromPath[str]
) -> Response[bytes]:
    return await _query(db, request, "transaction_id", transaction_id)


@post("/v3/pay/transactions/out-trade-no/{out_trade_no:str}/close", status_code=200)  # 204 set per answer
async def close_order(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], out_trade_no: FromPath[str]
) -> Response[bytes]:
    body = await request.body()
    merchant = await authenticate(db, request, body)
    if isinstance(merchant, Response):
        return merchant
    data = _decode(body, CloseIn)
    if isinstance(data, str):
        return await error(db, 400, "PARAM_ERROR", data)
    if data.mchid != merchant["mchid"]:
        return await error(db, 403, "NO_AUTH", "请求的商户号与签名的商户号不一致")
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = $2 FOR UPDATE",
            data.mchid,
            out_trade_no,
        )
        if row is None:
            return await error(db, 404, "ORDER_NOT_EXIST", "订单不存在")
        if row["trade_state"] in {"SUCCESS", "REFUND"}:
            return await error(db, 400, "ORDERPAID", "订单已支付，不能关闭")
        await set_state(conn, row, "CLOSED")
    return await signed(db, 204)


async def set_state(conn: Conn, row: asyncpg.Record, state: str) -> None:
    await conn.execute(
        """
        UPDATE sandbox.wechatpay_orders SET trade_state = $3, trade_state_desc = $4
        WHERE mchid = $1 AND out_trade_no = $2
        """,
        row["mchid"],
        row["out_trade_no"],
        state,
        TRADE_DESC[state],
    )


@post("/v3/refund/domestic/refunds", status_code=200)
async def create_refund(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    body = await request.body()
    merchant = await authenticate(db, request, body)
    if isinstance(merchant, Response):
        return merchant
    data = _decode(body, RefundIn)
    if isinstance(data, str):
        return await error(db, 400, "PARAM_ERROR", data)
    if data.out_trade_no is None and data.transaction_id is None:
        return await error(db, 400, "PARAM_ERROR", "out_trade_no 与 transaction_id 必须二选一")
    if not _OUT_REFUND_NO.match(data.out_refund_no):
        return await error(db, 400, "PARAM_ERROR", "out_refund_no 格式错误")
    if data.amount.refund < 1 or data.amount.currency != "CNY":
        return await error(db, 400, "PARAM_ERROR", "amount.refund 至少 1 分，currency 只能为 CNY")
    mchid = merchant["mchid"]
    async with db.acquire() as conn, conn.transaction():
        if data.out_trade_no is not None:
            order = await conn.fetchrow(
                "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = $2 FOR UPDATE",
                mchid,
                data.out_trade_no,
            )
        else:
            order = await conn.fetchrow(
                "SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND transaction_id = $2 FOR UPDATE",
                mchid,
                data.transaction_id,
            )
        if order is None:
            return await error(db, 404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = await conn.fetchrow(
            "SELECT * FROM sandbox.wechatpay_refunds WHERE mchid = $1 AND out_refund_no = $2",
            mchid,
            data.out_refund_no,
        )
        if existing is not None:
            # A retry with the same out_refund_no refunds once: the same refund, or a refusal if
            # it does not describe the same refund.
            if (
                existing["out_trade_no"] != order["out_trade_no"]
                or existing["refund"] != data.amount.refund
                or existing["total"] != data.amount.total
            ):
                return await error(db, 400, "INVALID_REQUEST", "商户退款单号已存在，且参数与首次请求不一致")
            return await signed(db, 200, refund_json(existing))
        if order["trade_state"] not in {"SUCCESS", "REFUND"}:
            return await error(db, 400, "INVALID_REQUEST", "订单未支付，不能退款")
        if data.amount.total != order["total"]:
            return await error(db, 400, "INVALID_REQUEST", "订单金额与原订单不一致")
        done = await conn.fetchrow(
            """
            SELECT coalesce(sum(refund), 0) AS refunded, count(*) AS n FROM sandbox.wechatpay_refunds
            WHERE mchid = $1 AND out_trade_no = $2 AND status IN ('PROCESSING', 'SUCCESS')
            """,
            mchid,
            order["out_trade_no"],
        )
        assert done is not None
        if done["n"] >= MAX_PARTIAL_REFUNDS:
            return await error(db, 400, "INVALID_REQUEST", "部分退款次数已超过 50 次")
        if done["refunded"] + data.amount.refund > (order["payer_total"] or order["total"]):
            return await error(db, 400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        row = await conn.fetchrow(
            """
            INSERT INTO sandbox.wechatpay_refunds
                (mchid, out_refund_no, refund_id, out_trade_no, transaction_id, reason, notify_url, refund,
                 total, status)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PROCESSING') RETURNING *
            """,
            mchid,
            data.out_refund_no,
            "50" + datetime.now(CHINA).strftime("%Y%m%d") + secrets.randbelow(10**20).__format__("020d"),
            order["out_trade_no"],
            order["transaction_id"],
            data.reason,
            data.notify_url,
            data.amount.refund,
            data.amount.total,
        )
        assert row is not None
        await set_state(conn, order, "REFUND")
    return await signed(db, 200, refund_json(row))


@get("/v3/refund/domestic/refunds/{out_refund_no:str}")
async def query_refund(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], out_refund_no: FromPath[str]
) -> Response[bytes]:
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    row = await db.fetchrow(
        "SELECT * FROM sandbox.wechatpay_refunds WHERE mchid = $1 AND out_refund_no = $2",
        merchant["mchid"],
        out_refund_no,
    )
    if row is None:
        return await error(db, 404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return await signed(db, 200, refund_json(row))


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
    "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)


async def trade_bill(db: asyncpg.Pool, mchid: str, day: date) -> tuple[bytes, int]:
    """The ALL trade bill of one China-time day: a payment row per success, a row per refund success.

    Fields are backtick-prefixed (so spreadsheets keep long numbers), amounts in yuan with two
    decimals as in WeChat's file; fee rate 0 (non-tax accounts pay no fee).
    """
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
    end = start + timedelta(days=1)
    orders = await db.fetch(
        """
        SELECT * FROM sandbox.wechatpay_orders
        WHERE mchid = $1 AND success_time >= $2 AND success_time < $3 ORDER BY success_time, out_trade_no
        """,
        mchid,
        start,
        end,
    )
    refunds = await db.fetch(
        """
        SELECT r.*, o.appid, o.payer_openid, o.trade_type, o.description FROM sandbox.wechatpay_refunds r
        JOIN sandbox.wechatpay_orders o USING (mchid, out_trade_no)
        WHERE r.mchid = $1 AND r.status = 'SUCCESS' AND r.success_time >= $2 AND r.success_time < $3
        ORDER BY r.success_time, r.out_refund_no
        """,
        mchid,
        start,
        end,
    )
    rows: list[tuple[datetime, list[str]]] = []
    paid = refunded = 0
    for o in orders:
        paid += o["payer_total"]
        fields = [
            o["success_time"].astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            o["appid"],
            o["mchid"],
            "0",
            "",
            o["transaction_id"],
            o["out_trade_no"],
            o["payer_openid"] or "",
            o["trade_type"],
            "SUCCESS",
            "OTHERS",
            "CNY",
            _yuan(o["payer_total"]),
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            o["description"],
            o["request"].get("attach") or "",
            "0.00000",
            "0.00%",
            _yuan(o["total"]),
            "0.00",
            "",
        ]
        rows.append((o["success_time"], fields))
    for r in refunds:
        refunded += r["refund"]
        fields = [
            r["success_time"].astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            r["appid"],
            r["mchid"],
            "0",
            "",
            r["transaction_id"],
            r["out_trade_no"],
            r["payer_openid"] or "",
            r["trade_type"],
            "REFUND",
            "OTHERS",
            "CNY",
            "0.00",
            "0.00",
            r["refund_id"],
            r["out_refund_no"],
            _yuan(r["refund"]),
            "0.00",
            "ORIGINAL",
            "SUCCESS",
            r["description"],
            "",
            "0.00000",
            "0.00%",
            "0.00",
            _yuan(r["refund"]),
            "",
        ]
        rows.append((r["success_time"], fields))
    rows.sort(key=lambda item: item[0])
    lines = [BILL_HEADER]
    lines += [",".join("`" + f for f in fields) for _, fields in rows]
    lines.append(SUMMARY_HEADER)
    lines.append(
        ",".join(
            "`" + f
            for f in [
                str(len(rows)),
                _yuan(paid),
                _yuan(refunded),
                "0.00",
                "0.00000",
                _yuan(paid),
                _yuan(refunded),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8"), len(rows)


def _bill_token(mchid: str, day: date) -> str:
    return base64.urlsafe_b64encode(f"{mchid}|{day.isoformat()}".encode()).decode().rstrip("=")


@get("/v3/bill/tradebill")
async def tradebill(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[bytes]:
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    try:
        day = date.fromisoformat(request.query_params.get("bill_date", ""))
    except ValueError:
        return await error(db, 400, "PARAM_ERROR", "bill_date 格式应为 YYYY-MM-DD")
    if request.query_params.get("bill_type", "ALL") != "ALL":
        return await error(db, 400, "PARAM_ERROR", "沙箱只提供 bill_type=ALL")
    if day > datetime.now(CHINA).date():
        return await error(db, 400, "INVALID_REQUEST", "账单日期不能晚于今天")
    content, count = await trade_bill(db, merchant["mchid"], day)
    if count == 0:
        return await error(db, 400, "NO_STATEMENT_EXIST", "当日无账单")
    base = str(request.base_url).rstrip("/")
    return await signed(
        db,
        200,
        {
            "download_url": f"{base}{PREFIX}/v3/billdownload/file?token={_bill_token(merchant['mchid'], day)}",
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content, usedforsecurity=False).hexdigest(),  # WeChat's choice
        },
    )


@get("/v3/billdownload/file")
async def bill_download(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    """The file itself: a signed request as for any v3 call; the answer is the bare file (unsigned)."""
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    token = request.query_params.get("token", "")
    try:
        mchid, _, day_s = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition("|")
        day = date.fromisoformat(day_s)
    except ValueError:
        return await error(db, 400, "PARAM_ERROR", "token 无效")
    if mchid != merchant["mchid"]:
        return await error(db, 403, "NO_AUTH", "无权下载该账单")
    return Response((await trade_bill(db, mchid, day))[0], media_type="text/plain; charset=utf-8")


@get("/v3/certificates")
async def certificates(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[bytes]:
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    await keys.current(db)  # makes the first one at first use
    data = []
    for row in await keys.listed(db):
        enc = keys.aead_encrypt(merchant["apiv3_key"], row["cert_pem"].encode("ascii"), "certificate")
        data.append(
            {
                "serial_no": row["serial_no"],
                "effective_time": china_time(row["effective_time"]),
                "expire_time": china_time(row["expire_time"]),
                "encrypt_certificate": enc,
            }
        )
    return await signed(db, 200, {"data": data})


def wake_after_commit() -> None:
    DISPATCHER.wake()


async def enqueue_payment(conn: Conn, order: asyncpg.Record, apiv3_key: str) -> str:
    return await enqueue(
        conn,
        mchid=order["mchid"],
        apiv3_key=apiv3_key,
        out_trade_no=order["out_trade_no"],
        out_refund_no=None,
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        plaintext=order_json(order),
        notify_url=order["notify_url"],
    )


async def enqueue_refund(conn: Conn, refund: asyncpg.Record, apiv3_key: str) -> str | None:
    if not refund["notify_url"]:
        return None
    status = refund["status"]
    plaintext = {
        "mchid": refund["mchid"],
        "out_trade_no": refund["out_trade_no"],
        "transaction_id": refund["transaction_id"],
        "out_refund_no": refund["out_refund_no"],
        "refund_id": refund["refund_id"],
        "refund_status": status,
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund["total"],
            "refund": refund["refund"],
            "payer_total": refund["total"],
            "payer_refund": refund["refund"],
        },
    }
    if refund["success_time"] is not None:
        plaintext["success_time"] = china_time(refund["success_time"])
    return await enqueue(
        conn,
        mchid=refund["mchid"],
        apiv3_key=apiv3_key,
        out_trade_no=refund["out_trade_no"],
        out_refund_no=refund["out_refund_no"],
        event_type=f"REFUND.{status}",
        summary={"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}[status],
        original_type="refund",
        plaintext=plaintext,
        notify_url=refund["notify_url"],
    )


router = Router(
    path=PREFIX,
    route_handlers=[
        prepay_jsapi,
        prepay_app,
        prepay_native,
        query_order,
        query_transaction,
        close_order,
        create_refund,
        query_refund,
        tradebill,
        bill_download,
        certificates,
    ],
)
