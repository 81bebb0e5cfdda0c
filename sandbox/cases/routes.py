"""The case system (办件) simulation: applications, steps, 补正, special procedures, conclusion.

Its own vocabulary on the wire (snake_case, upstream status codes). Each change is an event with
a global `seq` (the "changed since" feed) and a per-case `case_seq`; events are pushed to the
application's `notify_url` as a signed webhook (HMAC-SHA256 over `timestamp.body`) with retries,
and a control API advances a case the way a department's officers would.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from sandbox.webhooks import SignedWebhooks

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


SECRET = os.environ.get("SANDBOX_CASE_WEBHOOK_SECRET", "sandbox-case-webhook-secret")
STATUS_CODES = {
    "submitted": "01",
    "pre_accepted": "02",
    "accepted": "03",
    "not_accepted": "04",
    "in_progress": "05",
    "awaiting_supplement": "06",
    "special_procedure": "07",
    "concluded": "08",
}
RESULT_CODES = {"0", "1", "2", "3", "4", "5", "6"}
PROCEDURES = {"检验", "检测", "鉴定", "专家评审", "听证", "招标", "拍卖", "公告"}
STEPS = {"承办", "审核", "批准"}


def problem(status: int, error: str, message: str) -> Response[Any]:
    return Response({"error": error, "message": message}, status_code=status)


WEBHOOKS = SignedWebhooks("Case", "sandbox.case_deliveries", SECRET)
schedule = WEBHOOKS.schedule


def event_json(row: asyncpg.Record | None) -> dict[str, Any]:
    assert row is not None
    return {
        "event_id": row["event_id"],
        "seq": row["seq"],
        "project_no": row["project_no"],
        "request_id": row["request_id"],
        "case_seq": row["case_seq"],
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "status": row["status"],
        "status_code": row["status_code"],
        "data": row["data"],
    }


async def emit(
    conn: Conn,
    app: asyncpg.Record | None,
    type_: str,
    status: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> dict[str, Any]:
    assert app is not None
    case_seq = await conn.fetchval(
        """
        UPDATE sandbox.case_applications SET case_seq = case_seq + 1, status = $2, status_code = $3
        WHERE project_no = $1 RETURNING case_seq
        """,
        app["project_no"],
        status,
        STATUS_CODES[status],
    )
    row = await conn.fetchrow(
        """
        INSERT INTO sandbox.case_events
            (event_id, project_no, request_id, case_seq, type, occurred_at, status, status_code, data)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *
        """,
        "EV" + uuid.uuid4().hex.upper(),
        app["project_no"],
        app["request_id"],
        case_seq,
        type_,
        at or datetime.now(UTC),
        status,
        STATUS_CODES[status],
        data,
    )
    return event_json(row)


class MaterialIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: Literal["elicence", "upload"]
    reference: str


class ApplicationIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    catalog_code: str
    task_code: str
    region_code: str
    applicant_ref: str
    channel: Literal["online", "hall"]
    form: dict[str, Any]
    materials: list[MaterialIn]
    notify_url: str | None = None


class SupplementIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    supplement_id: str
    answer: str
    materials: list[MaterialIn] = []


def application_json(row: asyncpg.Record | None) -> dict[str, Any]:
    assert row is not None
    return {
        "project_no": row["project_no"],
        "request_id": row["request_id"],
        "catalog_code": row["catalog_code"],
        "region_code": row["region_code"],
        "status": row["status"],
        "status_code": row["status_code"],
        "case_seq": row["case_seq"],
        "open_supplement": row["open_supplement"],
    }


async def dedup(conn: Conn, request_id: str) -> Response[Any] | None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cases:' || $1))", request_id)
    row = await conn.fetchrow(
        "SELECT status, body FROM sandbox.case_requests WHERE request_id = $1", request_id
    )
    return None if row is None else Response(row["body"], status_code=row["status"])


async def answer(conn: Conn, request_id: str, status: int, body: dict[str, Any]) -> Response[Any]:
    await conn.execute(
        "INSERT INTO sandbox.case_requests (request_id, status, body) VALUES ($1, $2, $3)",
        request_id,
        status,
        body,
    )
    return Response(body, status_code=status)


@post("/requests/{request_id:str}/void")
async def void_request(db: NamedDependency[asyncpg.Pool], request_id: FromPath[str]) -> Response[Any]:
    """The truth about one request id, made final: the answer already given to it, or (if the
    request never arrived) a tombstone, so that it is refused if it arrives late."""
    async with db.acquire() as conn, conn.transaction():
        seen = await dedup(conn, request_id)
        if seen is not None:
            return Response(
                {"request_id": request_id, "voided": False, "status": seen.status_code, "body": seen.content}
            )
        body = {"error": "request_voided", "message": "this request was voided before it arrived"}
        await answer(conn, request_id, 409, body)
        return Response({"request_id": request_id, "voided": True, "status": 409, "body": body})


@post("/applications")
async def apply(db: NamedDependency[asyncpg.Pool], data: Annotated[ApplicationIn, Body()]) -> Response[Any]:
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id)) is not None:
                return seen
            active = await conn.fetchval(
                "SELECT 1 FROM sandbox.catalogue_entries WHERE catalog_code = $1 AND status = 'active' LIMIT 1",
                data.catalog_code,
            )
            if active is None:
                return await answer(
                    conn, data.request_id, 422, {"error": "unknown_item", "message": data.catalog_code}
                )
            serial = int(hashlib.sha256(data.request_id.encode()).hexdigest()[:12], 16) % 10**8
            project_no = f"{data.region_code}{datetime.now(UTC):%Y%m%d}{serial:08d}"
            app = await conn.fetchrow(
                """
                INSERT INTO sandbox.case_applications
                    (project_no, request_id, catalog_code, task_code, region_code, applicant_ref, channel,
                     form, materials, notify_url, status, status_code)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'submitted', '01') RETURNING *
                """,
                project_no,
                data.request_id,
                data.catalog_code,
                data.task_code,
                data.region_code,
                data.applicant_ref,
                data.channel,
                data.form,
                msgspec.to_builtins(data.materials),
                data.notify_url,
            )
            event = await emit(conn, app, "submitted", "submitted", {"channel": data.channel})
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1", project_no
            )
            response = await answer(conn, data.request_id, 201, {**application_json(app), "events": [event]})
        schedule(db, data.notify_url, [event])
        return response


@get("/applications/{project_no:str}")
async def get_application(db: NamedDependency[asyncpg.Pool], project_no: FromPath[str]) -> Response[Any]:
    app = await db.fetchrow("SELECT * FROM sandbox.case_applications WHERE project_no = $1", project_no)
    if app is None:
        return problem(404, "not_found", project_no)
    events = await db.fetch(
        "SELECT * FROM sandbox.case_events WHERE project_no = $1 ORDER BY case_seq", project_no
    )
    return Response({**application_json(app), "events": [event_json(e) for e in events]})


@get("/changes")
async def changes(
    db: NamedDependency[asyncpg.Pool],
    since: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT * FROM sandbox.case_events WHERE seq > $1 ORDER BY seq LIMIT $2", since, limit
    )
    events = [event_json(r) for r in rows]
    return {"events": events, "next_since": events[-1]["seq"] if events else since}


@post("/applications/{project_no:str}/supplements")
async def supplement(
    db: NamedDependency[asyncpg.Pool], project_no: FromPath[str], data: Annotated[SupplementIn, Body()]
) -> Response[Any]:
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id)) is not None:
                return seen
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1 FOR UPDATE", project_no
            )
            if app is None:
                return problem(404, "not_found", project_no)
            if app["status"] != "awaiting_supplement" or app["open_supplement"] != data.supplement_id:
                return await answer(
                    conn,
                    data.request_id,
                    409,
                    {"error": "no_open_supplement", "message": "nothing to answer"},
                )
            accepted = await conn.fetchval(
                "SELECT 1 FROM sandbox.case_events WHERE project_no = $1 AND type = 'accepted'", project_no
            )
            await conn.execute(
                "UPDATE sandbox.case_applications SET open_supplement = NULL WHERE project_no = $1",
                project_no,
            )
            event = await emit(
                conn,
                app,
                "supplement_answered",
                "in_progress" if accepted else "pre_accepted",
                {
                    "supplement_id": data.supplement_id,
                    "answer": data.answer,
                    "materials": msgspec.to_builtins(data.materials),
                },
            )
            response = await answer(conn, data.request_id, 201, {"event": event})
        schedule(db, app["notify_url"], [event])
        return response


# --- control API: what the department's officers do ---


class AdvanceIn(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal[
        "pre_accept",
        "accept",
        "not_accept",
        "step",
        "request_supplement",
        "start_special",
        "end_special",
        "conclude",
    ]
    officer: str = "王科员"
    opinion: str = ""
    step: str | None = None
    items: list[str] = []
    # Hold the transaction open this long after the event took its `seq`: the event then commits
    # after later ones (what a busy case system does), for the feed readers' tests.
    commit_delay_ms: int = 0
    procedure: str | None = None
    expected_days: int | None = None
    result_code: str | None = None
    licence_no: str | None = None
    at: datetime | None = None
    deliver: bool = True


_ALLOWED = {
    "pre_accept": ({"submitted"}, "pre_accepted", "pre_accepted"),
    "accept": ({"submitted", "pre_accepted"}, "accepted", "accepted"),
    "not_accept": ({"submitted", "pre_accepted"}, "not_accepted", "not_accepted"),
    "step": ({"accepted", "in_progress"}, "step", "in_progress"),
    "request_supplement": (
        {"pre_accepted", "accepted", "in_progress"},
        "supplement_requested",
        "awaiting_supplement",
    ),
    "start_special": ({"accepted", "in_progress"}, "special_started", "special_procedure"),
    "end_special": ({"special_procedure"}, "special_ended", "in_progress"),
    "conclude": ({"accepted", "in_progress"}, "concluded", "concluded"),
}


@post("/_control/applications/{project_no:str}/advance")
async def advance(
    db: NamedDependency[asyncpg.Pool], project_no: FromPath[str], data: Annotated[AdvanceIn, Body()]
) -> Response[Any]:
    allowed, type_, status = _ALLOWED[data.action]
    data_out: dict[str, Any] = {"officer": data.officer, "opinion": data.opinion}
    if data.action == "step":
        if data.step not in STEPS:
            return problem(422, "bad_step", f"step must be one of {sorted(STEPS)}")
        data_out["step"] = data.step
    elif data.action == "request_supplement":
        if not data.items:
            return problem(422, "no_items", "say what must be supplied")
        data_out["supplement_id"] = "BZ" + uuid.uuid4().hex[:10].upper()
        data_out["items"] = data.items
    elif data.action in {"start_special", "end_special"}:
        if data.procedure not in PROCEDURES:
            return problem(422, "bad_procedure", f"procedure must be one of {sorted(PROCEDURES)}")
        data_out["procedure"] = data.procedure
        data_out["expected_days"] = data.expected_days
    elif data.action == "conclude":
        if data.result_code not in RESULT_CODES:
            return problem(422, "bad_result", "result_code must be 0..6")
        data_out["result_code"] = data.result_code
        data_out["licence_no"] = data.licence_no
    async with db.acquire() as conn:
        async with conn.transaction():
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1 FOR UPDATE", project_no
            )
            if app is None:
                return problem(404, "not_found", project_no)
            if app["status"] not in allowed:
                return problem(409, "bad_transition", f"cannot {data.action} from {app['status']}")
            if data.action == "request_supplement":
                await conn.execute(
                    "UPDATE sandbox.case_applications SET open_supplement = $2 WHERE project_no = $1",
                    project_no,
                    data_out["supplement_id"],
                )
            event = await emit(conn, app, type_, status, data_out, data.at)
            if data.commit_delay_ms > 0:
                await asyncio.sleep(min(data.commit_delay_ms, 30_000) / 1000)
        if data.deliver:
            schedule(db, app["notify_url"], [event])
        return Response(event, status_code=201)


@get("/_control/deliveries/{event_id:str}")
async def deliveries(db: NamedDependency[asyncpg.Pool], event_id: FromPath[str]) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT attempt, outcome FROM sandbox.case_deliveries WHERE event_id = $1 ORDER BY id", event_id
    )
    return {"attempts": [dict(r) for r in rows]}


# --- fees (缴费通知): issued by the department, paid through WeChat Pay or a bank, refunded ---

FEE_STATES_PAYABLE = {"accepted", "in_progress"}


class FeeLineIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    amount_fen: int


class FeeIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: list[FeeLineIn]
    payable_by: date
    issuing_department: str = "某某县自然资源局"
    deliver: bool = True


class FeePaidIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    out_trade_no: str
    transaction_id: str
    amount_fen: int
    paid_at: datetime


class FeeRefundIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Literal["不予受理", "减免", "多缴"] = "不予受理"
    amount_fen: int | None = None  # all of what was paid when absent
    deliver: bool = True


def fee_json(row: asyncpg.Record | None) -> dict[str, Any]:
    assert row is not None
    return {
        "fee_id": row["fee_id"],
        "project_no": row["project_no"],
        "lines": row["lines"],
        "total_fen": row["total_fen"],
        "payable_by": row["payable_by"].isoformat(),
        "payment_code": row["payment_code"],
        "issuing_department": row["issuing_department"],
        "status": row["status"],
        "paid": row["paid"],
        "receipt_no": row["receipt_no"],
        "refunds": row["refunds"],
    }


@post("/_control/applications/{project_no:str}/fee")
async def issue_fee(
    db: NamedDependency[asyncpg.Pool], project_no: FromPath[str], data: Annotated[FeeIn, Body()]
) -> Response[Any]:
    """The department issues a 缴费通知: fee lines in integer fen, a payable-by date, a 20-digit 非税缴款码."""
    if not data.lines or any(line.amount_fen <= 0 or not line.name for line in data.lines):
        return problem(422, "bad_lines", "every fee line needs a name and a positive amount in fen")
    lines = [{"name": line.name, "amount_fen": line.amount_fen} for line in data.lines]
    total = sum(line.amount_fen for line in data.lines)
    async with db.acquire() as conn:
        async with conn.transaction():
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1 FOR UPDATE", project_no
            )
            if app is None:
                return problem(404, "not_found", project_no)
            if app["status"] not in FEE_STATES_PAYABLE:
                return problem(409, "bad_transition", f"cannot issue a fee while {app['status']}")
            open_fee = await conn.fetchval(
                "SELECT fee_id FROM sandbox.case_fees WHERE project_no = $1 AND status = 'issued'", project_no
            )
            if open_fee is not None:
                return problem(409, "fee_open", f"fee {open_fee} is still unpaid")
            fee_id = "FE" + uuid.uuid4().hex[:14].upper()
            payment_code = f"{secrets.randbelow(9 * 10**19) + 10**19:020d}"
            row = await conn.fetchrow(
                """
                INSERT INTO sandbox.case_fees
                    (fee_id, project_no, lines, total_fen, payable_by, payment_code, issuing_department, status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'issued') RETURNING *
                """,
                fee_id,
                project_no,
                lines,
                total,
                data.payable_by,
                payment_code,
                data.issuing_department,
            )
            event = await emit(
                conn,
                app,
                "fee_issued",
                app["status"],
                {
                    "fee_id": fee_id,
                    "lines": lines,
                    "total_fen": total,
                    "payable_by": data.payable_by.isoformat(),
                    "payment_code": payment_code,
                    "issuing_department": data.issuing_department,
                },
            )
        if data.deliver:
            schedule(db, app["notify_url"], [event])
        return Response({"fee": fee_json(row), "event": event}, status_code=201)


@get("/fees/{fee_id:str}")
async def get_fee(db: NamedDependency[asyncpg.Pool], fee_id: FromPath[str]) -> Response[Any]:
    row = await db.fetchrow("SELECT * FROM sandbox.case_fees WHERE fee_id = $1", fee_id)
    if row is None:
        return problem(404, "not_found", fee_id)
    return Response(fee_json(row))


@post("/fees/{fee_id:str}/paid")
async def fee_paid(
    db: NamedDependency[asyncpg.Pool], fee_id: FromPath[str], data: Annotated[FeePaidIn, Body()]
) -> Response[Any]:
    """Told that the fee was paid: `fee_paid` (the case moves on to 承办) and then `receipt_issued` with
    the 财政电子票据 number. Idempotent by request_id; the same transaction again answers the same."""
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id)) is not None:
                return seen
            fee = await conn.fetchrow("SELECT * FROM sandbox.case_fees WHERE fee_id = $1 FOR UPDATE", fee_id)
            if fee is None:
                return problem(404, "not_found", fee_id)
            if fee["status"] != "issued":
                if fee["paid"] is not None and fee["paid"]["transaction_id"] == data.transaction_id:
                    return await answer(conn, data.request_id, 200, {"fee": fee_json(fee), "events": []})
                return await answer(
                    conn, data.request_id, 409, {"error": "not_payable", "message": f"fee is {fee['status']}"}
                )
            if data.amount_fen != fee["total_fen"]:
                return await answer(
                    conn,
                    data.request_id,
                    409,
                    {
                        "error": "amount_mismatch",
                        "message": f"paid {data.amount_fen} fen, the fee is {fee['total_fen']} fen",
                        "total_fen": fee["total_fen"],
                    },
                )
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1 FOR UPDATE", fee["project_no"]
            )
            assert app is not None
            paid = {
                "out_trade_no": data.out_trade_no,
                "transaction_id": data.transaction_id,
                "amount_fen": data.amount_fen,
                "paid_at": data.paid_at.isoformat(),
            }
            receipt_no = f"{datetime.now(UTC):%Y}{secrets.randbelow(10**12):012d}"
            fee = await conn.fetchrow(
                """
                UPDATE sandbox.case_fees SET status = 'paid', paid = $2, receipt_no = $3
                WHERE fee_id = $1 RETURNING *
                """,
                fee_id,
                paid,
                receipt_no,
            )
            moved_to = "in_progress" if app["status"] in {"accepted", "in_progress"} else app["status"]
            events = [
                await emit(conn, app, "fee_paid", moved_to, {"fee_id": fee_id, **paid}),
                await emit(
                    conn,
                    app,
                    "receipt_issued",
                    moved_to,
                    {
                        "fee_id": fee_id,
                        "receipt_no": receipt_no,
                        "amount_fen": data.amount_fen,
                        "kind": "财政电子票据",
                    },
                ),
            ]
            response = await answer(conn, data.request_id, 200, {"fee": fee_json(fee), "events": events})
        schedule(db, app["notify_url"], events)
        return response


@post("/_control/applications/{project_no:str}/fee-refund")
async def fee_refund(
    db: NamedDependency[asyncpg.Pool], project_no: FromPath[str], data: Annotated[FeeRefundIn, Body()]
) -> Response[Any]:
    """不予受理 after payment, a waiver (减免) or an overpayment: the case system asks for a refund."""
    async with db.acquire() as conn:
        async with conn.transaction():
            app = await conn.fetchrow(
                "SELECT * FROM sandbox.case_applications WHERE project_no = $1 FOR UPDATE", project_no
            )
            if app is None:
                return problem(404, "not_found", project_no)
            fee = await conn.fetchrow(
                """
                SELECT * FROM sandbox.case_fees WHERE project_no = $1 AND status IN ('paid', 'refund_requested')
                ORDER BY created_at DESC LIMIT 1 FOR UPDATE
                """,
                project_no,
            )
            if fee is None:
                return problem(409, "nothing_paid", "no paid fee to refund")
            asked = sum(r["amount_fen"] for r in fee["refunds"])
            amount = data.amount_fen if data.amount_fen is not None else fee["total_fen"] - asked
            if amount <= 0 or asked + amount > fee["total_fen"]:
                return problem(409, "refund_too_large", f"{fee['total_fen'] - asked} fen left to refund")
            refund = {
                "refund_no": "RQ" + uuid.uuid4().hex[:12].upper(),
                "amount_fen": amount,
                "reason": data.reason,
            }
            await conn.execute(
                """
                UPDATE sandbox.case_fees SET status = 'refund_requested', refunds = refunds || $2::jsonb
                WHERE fee_id = $1
                """,
                fee["fee_id"],
                [refund],
            )
            event = await emit(
                conn,
                app,
                "refund_requested",
                app["status"],
                {
                    "fee_id": fee["fee_id"],
                    "amount_fen": amount,
                    "reason": data.reason,
                    "refund_no": refund["refund_no"],
                },
            )
        if data.deliver:
            schedule(db, app["notify_url"], [event])
        return Response(event, status_code=201)


router = Router(
    path="/cases",
    route_handlers=[
        void_request,
        apply,
        get_application,
        changes,
        supplement,
        advance,
        deliveries,
        issue_fee,
        get_fee,
        fee_paid,
        fee_refund,
    ],
)
