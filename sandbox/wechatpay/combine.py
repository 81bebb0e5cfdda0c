"""WeChat Pay v3 合单支付 for a direct merchant (`/v3/combine-transactions/...`): one payment sheet
over 2-10 sub-orders. Each sub-order is kept as an ordinary order that names its combine, so its
transaction id, refunds (the ordinary refund API, by the sub-order's number) and bill line are the
ones `routes` already serves. The payer pays the sheet once; every sub-order succeeds together and
one notification carries them all (`combine_out_trade_no` and `sub_orders`).

The control route `POST /_control/wechatpay/combines/{combine_out_trade_no}/pay` is the resident
paying the sheet.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from sandbox.wechatpay.control import _transaction_id, refused
from sandbox.wechatpay.keys import DEV_MCHID, china_time
from sandbox.wechatpay.notify import DISPATCHER, Conn, enqueue
from sandbox.wechatpay.routes import (
    _OUT_NO,
    PREFIX,
    TRADE_DESC,
    _decode,
    _parse_time,
    _prepay_id,
    authenticate,
    error,
    signed,
)

MIN_SUB_ORDERS, MAX_SUB_ORDERS = 2, 10  # a direct merchant's limits


class SubAmount(msgspec.Struct):
    total_amount: int
    currency: str = "CNY"


class SubOrderIn(msgspec.Struct):
    mchid: str
    out_trade_no: str
    description: str
    attach: str
    amount: SubAmount


class CombinePayer(msgspec.Struct):
    openid: str


class CombineIn(msgspec.Struct):
    combine_appid: str
    combine_mchid: str
    combine_out_trade_no: str
    sub_orders: list[SubOrderIn]
    notify_url: str
    time_expire: str | None = None
    combine_payer_info: CombinePayer | None = None
    scene_info: dict[str, Any] | None = None


class SubOrderRef(msgspec.Struct):
    mchid: str
    out_trade_no: str


class CombineCloseIn(msgspec.Struct):
    combine_appid: str
    sub_orders: list[SubOrderRef]


def _refusal(data: CombineIn, merchant: asyncpg.Record, trade_type: str) -> tuple[int, str, str] | None:
    if data.combine_mchid != merchant["mchid"]:
        return 403, "NO_AUTH", "请求的商户号与签名的商户号不一致"
    if data.combine_appid not in merchant["appids"]:
        return 400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配"
    if not _OUT_NO.match(data.combine_out_trade_no):
        return 400, "PARAM_ERROR", "combine_out_trade_no 格式错误（6-32 位字母、数字、_-|*）"
    if not MIN_SUB_ORDERS <= len(data.sub_orders) <= MAX_SUB_ORDERS:
        return 400, "PARAM_ERROR", f"子单数量应为 {MIN_SUB_ORDERS}-{MAX_SUB_ORDERS}"
    if len({s.out_trade_no for s in data.sub_orders}) != len(data.sub_orders):
        return 400, "PARAM_ERROR", "子单商户订单号重复"
    for sub in data.sub_orders:
        # A direct merchant combines its own orders only.
        if sub.mchid != merchant["mchid"]:
            return 400, "PARAM_ERROR", "子单商户号须为合单发起方商户号"
        if not _OUT_NO.match(sub.out_trade_no):
            return 400, "PARAM_ERROR", "子单 out_trade_no 格式错误"
        if not 1 <= len(sub.description) <= 127 or not 1 <= len(sub.attach) <= 128:
            return 400, "PARAM_ERROR", "description 长度应为 1-127，attach 长度应为 1-128"
        if sub.amount.total_amount < 1 or sub.amount.currency != "CNY":
            return 400, "PARAM_ERROR", "amount.total_amount 至少 1 分，currency 只能为 CNY"
    if not data.notify_url.startswith(("http://", "https://")):
        return 400, "PARAM_ERROR", "notify_url 格式错误"
    if trade_type == "JSAPI" and (data.combine_payer_info is None or not data.combine_payer_info.openid):
        return 400, "PARAM_ERROR", "JSAPI 合单支付必须传 combine_payer_info.openid"
    return None


async def _prepay(db: asyncpg.Pool, request: Request[Any, Any, Any], trade_type: str) -> Response[bytes]:
    body = await request.body()
    merchant = await authenticate(db, request, body)
    if isinstance(merchant, Response):
        return merchant
    data = _decode(body, CombineIn)
    if isinstance(data, str):
        return await error(db, 400, "PARAM_ERROR", f"输入源“/body”映射到值字段失败: {data}")
    refusal = _refusal(data, merchant, trade_type)
    if refusal is not None:
        return await error(db, *refusal)
    expire: datetime | None = None
    if data.time_expire is not None:
        expire = _parse_time(data.time_expire)
        if expire is None:
            return await error(db, 400, "PARAM_ERROR", "time_expire 不是 RFC 3339 格式")
    openid = data.combine_payer_info.openid if data.combine_payer_info else None
    request_key = {
        "trade_type": trade_type,
        "appid": data.combine_appid,
        "openid": openid,
        "sub_orders": [
            [s.out_trade_no, s.description, s.attach, s.amount.total_amount] for s in data.sub_orders
        ],
    }
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('wxpay:combine:' || $1 || ':' || $2))",
            data.combine_mchid,
            data.combine_out_trade_no,
        )
        row = await conn.fetchrow(
            """
            SELECT * FROM sandbox.wechatpay_combines
            WHERE combine_mchid = $1 AND combine_out_trade_no = $2 FOR UPDATE
            """,
            data.combine_mchid,
            data.combine_out_trade_no,
        )
        if row is not None:
            states = await _sub_states(conn, row)
            if states & {"SUCCESS", "REFUND"}:
                return await error(db, 400, "ORDERPAID", "该合单已支付")
            if states & {"CLOSED", "REVOKED"}:
                return await error(db, 400, "ORDER_CLOSED", "该合单已关闭")
            if row["request"] != request_key:
                return await error(db, 400, "INVALID_REQUEST", "合单商户订单号重复（参数与首次请求不一致）")
            return await _prepay_answer(db, trade_type, row["prepay_id"], row["code_url"])
        taken = await conn.fetchval(
            "SELECT count(*) FROM sandbox.wechatpay_orders WHERE mchid = $1 AND out_trade_no = ANY($2::text[])",
            data.combine_mchid,
            [s.out_trade_no for s in data.sub_orders],
        )
        if taken:
            return await error(db, 400, "INVALID_REQUEST", "子单商户订单号已被使用")
        prepay_id = _prepay_id() if trade_type != "NATIVE" else None
        code_url = (
            f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}" if trade_type == "NATIVE" else None
        )
        await conn.execute(
            """
            INSERT INTO sandbox.wechatpay_combines
                (combine_mchid, combine_out_trade_no, combine_appid, trade_type, notify_url, payer_openid,
                 time_expire, request, prepay_id, code_url)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            data.combine_mchid,
            data.combine_out_trade_no,
            data.combine_appid,
            trade_type,
            data.notify_url,
            openid,
            expire,
            request_key,
            prepay_id,
            code_url,
        )
        await conn.executemany(
            """
            INSERT INTO sandbox.wechatpay_orders
                (mchid, out_trade_no, appid, trade_type, description, notify_url, total, currency,
                 payer_openid, time_expire, request, trade_state, trade_state_desc, combine_out_trade_no)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'NOTPAY', $12, $13)
            """,
            [
                (
                    s.mchid,
                    s.out_trade_no,
                    data.combine_appid,
                    trade_type,
                    s.description,
                    data.notify_url,
                    s.amount.total_amount,
                    s.amount.currency,
                    openid,
                    expire,
                    {"attach": s.attach},
                    TRADE_DESC["NOTPAY"],
                    data.combine_out_trade_no,
                )
                for s in data.sub_orders
            ],
        )
    return await _prepay_answer(db, trade_type, prepay_id, code_url)


async def _prepay_answer(
    db: asyncpg.Pool, trade_type: str, prepay_id: str | None, code_url: str | None
) -> Response[bytes]:
    return await signed(
        db, 200, {"code_url": code_url} if trade_type == "NATIVE" else {"prepay_id": prepay_id}
    )


async def _subs(conn: Conn | asyncpg.Pool, combine: asyncpg.Record) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT * FROM sandbox.wechatpay_orders WHERE mchid = $1 AND combine_out_trade_no = $2
        ORDER BY out_trade_no
        """,
        combine["combine_mchid"],
        combine["combine_out_trade_no"],
    )
    return rows


async def _sub_states(conn: Conn, combine: asyncpg.Record) -> set[str]:
    return {r["trade_state"] for r in await _subs(conn, combine)}


def combine_json(combine: asyncpg.Record, subs: list[asyncpg.Record]) -> dict[str, Any]:
    """The combine as its query answers and its notification carries it."""
    orders = []
    for s in subs:
        sub: dict[str, Any] = {
            "mchid": s["mchid"],
            "trade_type": s["trade_type"],
            "trade_state": s["trade_state"],
            "attach": s["request"].get("attach") or "",
            "out_trade_no": s["out_trade_no"],
            "amount": {"total_amount": s["total"], "currency": s["currency"]},
        }
        if s["transaction_id"] is not None:
            sub["transaction_id"] = s["transaction_id"]
            sub["bank_type"] = "OTHERS"
            sub["success_time"] = china_time(s["success_time"])
            sub["amount"].update(payer_amount=s["payer_total"], payer_currency=s["currency"])
        orders.append(sub)
    out: dict[str, Any] = {
        "combine_appid": combine["combine_appid"],
        "combine_mchid": combine["combine_mchid"],
        "combine_out_trade_no": combine["combine_out_trade_no"],
        "sub_orders": orders,
    }
    payer = next((s["payer_openid"] for s in subs if s["payer_openid"]), combine["payer_openid"])
    if payer:
        out["combine_payer_info"] = {"openid": payer}
    return out


_READ = "SELECT * FROM sandbox.wechatpay_combines WHERE combine_mchid = $1 AND combine_out_trade_no = $2"
_LOCKED = _READ + " FOR UPDATE"


async def _combine(
    conn: Conn | asyncpg.Pool, mchid: str, combine_out_trade_no: str, *, lock: bool = False
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        _LOCKED if lock else _READ,
        mchid,
        combine_out_trade_no,
    )
    return row


@post("/v3/combine-transactions/jsapi", status_code=200)
async def combine_jsapi(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    return await _prepay(db, request, "JSAPI")


@post("/v3/combine-transactions/app", status_code=200)
async def combine_app(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _prepay(db, request, "APP")


@post("/v3/combine-transactions/native", status_code=200)
async def combine_native(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]
) -> Response[bytes]:
    return await _prepay(db, request, "NATIVE")


@get("/v3/combine-transactions/out-trade-no/{combine_out_trade_no:str}")
async def query_combine(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], combine_out_trade_no: FromPath[str]
) -> Response[bytes]:
    merchant = await authenticate(db, request, await request.body())
    if isinstance(merchant, Response):
        return merchant
    row = await _combine(db, merchant["mchid"], combine_out_trade_no)
    if row is None:
        return await error(db, 404, "ORDER_NOT_EXIST", "订单不存在")
    return await signed(db, 200, combine_json(row, await _subs(db, row)))


@post("/v3/combine-transactions/out-trade-no/{combine_out_trade_no:str}/close", status_code=200)
async def close_combine(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], combine_out_trade_no: FromPath[str]
) -> Response[bytes]:
    body = await request.body()
    merchant = await authenticate(db, request, body)
    if isinstance(merchant, Response):
        return merchant
    data = _decode(body, CombineCloseIn)
    if isinstance(data, str):
        return await error(db, 400, "PARAM_ERROR", data)
    async with db.acquire() as conn, conn.transaction():
        row = await _combine(conn, merchant["mchid"], combine_out_trade_no, lock=True)
        if row is None:
            return await error(db, 404, "ORDER_NOT_EXIST", "订单不存在")
        if data.combine_appid != row["combine_appid"]:
            return await error(db, 400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        subs = await _subs(conn, row)
        if {(s.mchid, s.out_trade_no) for s in data.sub_orders} != {
            (s["mchid"], s["out_trade_no"]) for s in subs
        }:
            return await error(db, 400, "PARAM_ERROR", "子单列表与合单不一致")
        if any(s["trade_state"] in {"SUCCESS", "REFUND"} for s in subs):
            return await error(db, 400, "ORDERPAID", "订单已支付，不能关闭")
        await conn.execute(
            """
            UPDATE sandbox.wechatpay_orders SET trade_state = 'CLOSED', trade_state_desc = $3
            WHERE mchid = $1 AND combine_out_trade_no = $2
            """,
            row["combine_mchid"],
            combine_out_trade_no,
            TRADE_DESC["CLOSED"],
        )
    return await signed(db, 204)


class CombinePayIn(msgspec.Struct, forbid_unknown_fields=True):
    mchid: str = DEV_MCHID
    openid: str | None = None


@post("/combines/{combine_out_trade_no:str}/pay", status_code=200)
async def pay_combine(
    db: NamedDependency[asyncpg.Pool],
    combine_out_trade_no: FromPath[str],
    data: Annotated[CombinePayIn, Body()],
) -> Response[Any]:
    """The resident pays the sheet: every sub-order SUCCESS with its own transaction id, one notification."""
    async with db.acquire() as conn:
        async with conn.transaction():
            row = await _combine(conn, data.mchid, combine_out_trade_no, lock=True)
            if row is None:
                return refused(404, "not_found", combine_out_trade_no)
            subs = await _subs(conn, row)
            if any(s["trade_state"] not in {"NOTPAY", "USERPAYING"} for s in subs):
                return refused(409, "not_payable", "a sub-order is not payable")
            if row["time_expire"] is not None and row["time_expire"] <= datetime.now(UTC):
                return refused(409, "expired", "time_expire has passed")
            openid = row["payer_openid"] or data.openid or "o" + secrets.token_urlsafe(20)
            for s in subs:
                await conn.execute(
                    """
                    UPDATE sandbox.wechatpay_orders
                    SET trade_state = 'SUCCESS', trade_state_desc = '支付成功', transaction_id = $3,
                        success_time = now(), payer_total = total, payer_openid = $4
                    WHERE mchid = $1 AND out_trade_no = $2
                    """,
                    s["mchid"],
                    s["out_trade_no"],
                    _transaction_id(),
                    openid,
                )
            apiv3_key = await conn.fetchval(
                "SELECT apiv3_key FROM sandbox.wechatpay_merchants WHERE mchid = $1", data.mchid
            )
            nid = await enqueue(
                conn,
                mchid=data.mchid,
                apiv3_key=apiv3_key,
                out_trade_no=combine_out_trade_no,
                out_refund_no=None,
                event_type="TRANSACTION.SUCCESS",
                summary="支付成功",
                original_type="transaction",
                plaintext=combine_json(row, await _subs(conn, row)),
                notify_url=row["notify_url"],
            )
        DISPATCHER.wake()
        return Response({"notification_id": nid, "sub_orders": len(subs)})


router = Router(
    path=PREFIX,
    route_handlers=[combine_jsapi, combine_app, combine_native, query_combine, close_combine],
)
control_router = Router(path="/_control/wechatpay", route_handlers=[pay_combine])
