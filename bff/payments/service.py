"""Paying a case's fee with WeChat Pay v3, and every way we learn what happened to the money.

Orders: the amount is the case system's fee (through `CaseService.open_fee`), never the client's;
one live order per fee (a partial unique index), its `out_trade_no` the idempotency request id, so
a re-run sends the platform the same order and gets the same prepay id.

What the platform says about an order reaches `_apply_transaction` by three paths — a verified
notification, a query when the resident comes back (`view`), the reconciler — and is applied once
under the order's row lock: the first SUCCESS moves the order to `paid`, writes ONE ledger row (the
ledger's unique key is the platform's transaction id), the outbox message and the audit record in
one transaction; later copies find the transaction id already there and change nothing. A paid
order is left `report_pending`, and a job tells the case system (crash-safe: the flag is committed
with the payment).

Refunds start from the case system's `refund_requested` event (the case events funnel calls
`case_event` in its own transaction): a `requested` row, whose `out_refund_no` is derived from the
case system's refund number, so every retry is the same refund; the total never exceeds what was
paid (checked under the order's lock). A job submits requested refunds; the refund notification
or a query settles them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import asyncpg
import asyncpg.pool
import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis

from adapters.cases.schemas import CaseEvent
from adapters.errors import BadUpstreamAnswer, ProblemError, UpstreamUnavailable
from adapters.wechatpay import callback
from adapters.wechatpay.client import WeChatPayClient, WeChatPayRefused
from adapters.wechatpay.schemas import CombineTransaction, Refund, RefundNotice, Transaction
from auth import audit, sessions
from auth.principal import Principal
from bff.cases.schemas import FeeNotice
from bff.cases.service import CaseService, PaymentRef, TimelineStep
from bff.idempotency import IdemContext, Recorded
from bff.payments.schemas import AppParams, DepartmentPaymentOut, JsapiParams, PaymentOut, RefundOut
from bff.platform.access import owned, parse_uuid
from bff.platform.logs import get_logger
from push import outbox
from push.topics import PaymentChanged

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

log = get_logger("bff.payments")

NOTIFY_OUTCOMES = Counter(
    "sx_payment_notifications_total", "WeChat Pay notifications by outcome", ["outcome"]
)
BILL_DIFFERENCES = Counter(
    "sx_payment_bill_differences_total", "Trade bill lines that differ from our ledger", ["kind"]
)

TRADE_TYPES = {"miniprogram": "JSAPI", "app": "APP", "kiosk": "NATIVE"}
OPEN = ("created", "paying")
PAID_STATES = ("paid", "refunding", "refunded", "partially_refunded")
_REFUND_NS = uuid.UUID("0c4d7a61-5f2e-4c3b-9a8e-7061796d656e")
CHINA = timedelta(hours=8)
MAX_PARTIAL_REFUNDS = 50
COMBINE_MAX = 10  # sub-orders in one 合单支付 of a direct merchant (at least 2)

TITLES = {
    "payment_created": ("已下单，待支付", "Payment order created"),
    "payment_paid": ("已支付", "Paid"),
    "payment_closed": ("订单已关闭", "Payment order closed"),
    "payment_failed": ("支付失败", "Payment failed"),
    "refund_success": ("已退款", "Refunded"),
    "refund_failed": ("退款异常", "Refund failed"),
}


def china_time(at: datetime) -> str:
    """RFC 3339 in China time, the way WeChat writes times (`2026-01-02T10:00:00+08:00`)."""
    return at.astimezone(timezone(CHINA)).isoformat(timespec="seconds")


def _at(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None


class PaymentService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        client: WeChatPayClient,
        cases: CaseService,
        *,
        notify_url: str,
        expire_s: int,
        check_after_s: float,
        check_max_s: float,
        notify_window_s: int,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.client = client
        self.cases = cases
        self.notify_url = notify_url
        self.expire_s = expire_s
        self.check_after_s = check_after_s
        self.check_max_s = check_max_s
        self.notify_window_s = notify_window_s

    # --- creating (or returning) the fee's order ---

    async def create(self, ctx: IdemContext, principal: Principal, case_id: str) -> Recorded[PaymentOut]:
        fee = await self.cases.open_fee(principal, case_id)
        if fee is None:
            raise ProblemError(
                "the case system has issued no fee for this case",
                status=409,
                code="no_fee_due",
                detail_zh="案件系统未对该办件开具费用",
            )
        trade_type = _trade_type(principal)
        row = await self.pool.fetchrow("SELECT * FROM bff.payment_orders WHERE id = $1", ctx.request_id)
        if row is None:
            row = await self._live_order(fee)
            if row is None:
                row = await self._new_order(ctx, principal, fee, trade_type)
        if row["status"] in OPEN and row["trade_type"] != trade_type:
            raise _open_elsewhere(row)
        row = await self._ensure_prepay(row)
        async with self.pool.acquire() as conn, conn.transaction():
            return await ctx.finish(conn, await self._out(conn, row, with_params=True))

    async def _live_order(self, fee: FeeNotice) -> asyncpg.Record | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.payment_orders WHERE fee_id = $1 AND status NOT IN ('closed', 'failed')",
            fee.fee_id,
        )
        if row is not None and row["status"] in OPEN and row["time_expire"] <= datetime.now(UTC):
            # Past its time_expire it can no longer be paid: close it (or learn it was paid).
            await self._settle_expired(row)
            row = await self.pool.fetchrow(
                "SELECT * FROM bff.payment_orders WHERE fee_id = $1 AND status NOT IN ('closed', 'failed')",
                fee.fee_id,
            )
        return row

    async def _new_order(
        self, ctx: IdemContext, principal: Principal, fee: FeeNotice, trade_type: str
    ) -> asyncpg.Record:
        if fee.paid_upstream:
            raise ProblemError(
                "the case system already has this fee as paid",
                status=409,
                code="fee_already_paid",
                detail_zh="案件系统显示该费用已缴纳",
            )
        openid = await self._payer(principal, trade_type)
        now = datetime.now(UTC).replace(microsecond=0)
        expire = self._expiry(fee, now)
        row = await self.pool.fetchrow(
            """
            INSERT INTO bff.payment_orders
                (id, case_id, person_id, fee_id, out_trade_no, trade_type, appid, mchid, amount_fen,
                 description, payer_openid, time_expire, status, next_check_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'created', $13)
            ON CONFLICT DO NOTHING RETURNING *
            """,
            ctx.request_id,
            fee.case_id,
            principal.person_id,
            fee.fee_id,
            ctx.request_id.hex,  # 32 characters: WeChat's limit exactly
            trade_type,
            self.client.appid,
            self.client.mchid,
            fee.total_fen,
            f"{fee.item_name}-缴费"[:127],
            openid,
            expire,
            now + timedelta(seconds=self.check_after_s),
        )
        if row is None:
            # Another request made the fee's order first (the partial unique index): that one.
            row = await self.pool.fetchrow(
                "SELECT * FROM bff.payment_orders WHERE id = $1", ctx.request_id
            ) or await self.pool.fetchrow(
                "SELECT * FROM bff.payment_orders WHERE fee_id = $1 AND status NOT IN ('closed', 'failed')",
                fee.fee_id,
            )
            if row is None:
                raise ProblemError(
                    "the order was closed meanwhile; try again",
                    status=409,
                    code="conflict",
                    detail_zh="订单已被关闭，请重试",
                )
        else:
            await audit.record(
                self.pool,
                subject=principal.person_id,
                action="payment.order_created",
                object=f"payment:{row['id']}",
                result=f"fee={fee.fee_id} amount_fen={fee.total_fen}",
                channel=principal.channel,
            )
        return row

    async def _payer(self, principal: Principal, trade_type: str) -> str | None:
        """The payer's openid, which JSAPI needs (the mini-program session's)."""
        if trade_type != "JSAPI":
            return None
        session = await sessions.get(self.pool, principal.session_id)
        openid = session.openid if session is not None else None
        if not openid:
            raise ProblemError(
                "no WeChat openid in this session",
                status=409,
                code="payer_unknown",
                detail_zh="本会话没有微信 openid",
            )
        return openid

    def _expiry(self, fee: FeeNotice, now: datetime) -> datetime:
        """Payable until the end of the fee's payable-by day (China time), at most `expire_s` from
        now, and at least WeChat's minimum of one minute."""
        try:
            due = datetime.combine(date.fromisoformat(fee.payable_by), time(23, 59, 59), timezone(CHINA))
        except ValueError:
            due = now + timedelta(seconds=self.expire_s)
        if due < now + timedelta(seconds=60):
            raise ProblemError(
                f"the fee was payable by {fee.payable_by}; ask the department or pay at a bank with the code",
                status=409,
                code="fee_overdue",
                detail_zh=f"该费用须在 {fee.payable_by} 前缴纳；请联系部门或凭缴款码到银行缴纳",
            )
        return min(now + timedelta(seconds=self.expire_s), due.astimezone(UTC))

    async def _ensure_prepay(self, row: asyncpg.Record) -> asyncpg.Record:
        """An order the platform does not hold yet gets its prepay (the same fields every time)."""
        if row["status"] != "created":
            return row
        if row["combine_id"] is not None:
            await self._ensure_combine_prepay(await self._combine(row["combine_id"]))
            return await self._row(row["id"])
        try:
            prepay = await self.client.prepay(
                row["trade_type"],
                out_trade_no=row["out_trade_no"],
                description=row["description"],
                amount_fen=row["amount_fen"],
                notify_url=self.notify_url,
                time_expire=china_time(row["time_expire"]),
                openid=row["payer_openid"],
                attach=row["fee_id"],
            )
        except WeChatPayRefused as exc:
            if exc.reason == "ORDERPAID":
                await self._sync(row, "query")
                return await self._row(row["id"])
            raise ProblemError(
                exc.detail,
                status=502,
                code="payment_upstream_refused",
                detail_zh=f"微信支付拒绝了下单：{exc.detail}",
            ) from None
        updated = await self.pool.fetchrow(
            """
            UPDATE bff.payment_orders SET status = 'paying', trade_state = 'NOTPAY', prepay_id = $2,
                   code_url = $3, updated_at = now()
            WHERE id = $1 AND status = 'created' RETURNING *
            """,
            row["id"],
            prepay.prepay_id,
            prepay.code_url,
        )
        return updated or await self._row(row["id"])

    async def _row(self, order_id: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM bff.payment_orders WHERE id = $1", order_id)
        assert row is not None
        return row

    async def _combine(self, combine_id: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM bff.payment_combines WHERE id = $1", combine_id)
        assert row is not None
        return row

    # --- one payment for a department's fees across a life-event bundle ---

    async def pay_together(
        self,
        ctx: IdemContext,
        principal: Principal,
        application_id: uuid.UUID,
        department: str,
        case_ids: list[str],
    ) -> Recorded[DepartmentPaymentOut]:
        """Every fee the department issued on these cases (a bundle's submitted members) and still
        owed, paid at once: a 合单支付 over the fees' own orders (2-10 of them, WeChat's limits for a
        direct merchant), or the one fee's order. A fee already paid is left out; a fee with its own
        open order is a 409 until that order is paid or expires (one live order per fee)."""
        trade_type = _trade_type(principal)
        combine = await self.pool.fetchrow("SELECT * FROM bff.payment_combines WHERE id = $1", ctx.request_id)
        rows: list[asyncpg.Record]
        if combine is None:
            owed: list[FeeNotice] = []
            live_of: dict[str, asyncpg.Record | None] = {}
            issued = False
            for case_id in case_ids:
                fee = await self.cases.open_fee(principal, case_id)
                if fee is None or fee.issuing_department != department:
                    continue
                issued = True
                if fee.paid_upstream:
                    continue
                live = await self._live_order(fee)  # an expired one is closed here first
                if live is None or live["status"] in OPEN:
                    owed.append(fee)
                    live_of[fee.fee_id] = live
            if not issued:
                raise ProblemError(
                    f"no fee of this bundle is issued by {department!r}",
                    status=404,
                    code="department_unknown",
                    detail_zh=f"本次申请中没有“{department}”开具的费用",
                )
            if not owed:
                raise ProblemError(
                    "nothing the department issued on this bundle is owed",
                    status=409,
                    code="no_fee_due",
                    detail_zh="该部门在本次申请中没有待缴费用",
                )
            if len(owed) == 1:
                single = live_of[owed[0].fee_id] or await self._new_order(ctx, principal, owed[0], trade_type)
                if single["status"] in OPEN and single["trade_type"] != trade_type:
                    raise _open_elsewhere(single)
                if single["combine_id"] is None:
                    single = await self._ensure_prepay(single)
                    async with self.pool.acquire() as conn, conn.transaction():
                        out = await self._together_out(conn, application_id, department, None, [single])
                        return await ctx.finish(conn, out)
                combine = await self._combine(single["combine_id"])
            else:
                combine = await self._new_combine(
                    ctx, principal, application_id, department, owed[:COMBINE_MAX], trade_type
                )
        if combine["trade_type"] != trade_type:
            rows = await self._combined_orders(combine["id"])
            if any(r["status"] in OPEN for r in rows):
                raise _open_elsewhere(rows[0])
        combine = await self._ensure_combine_prepay(combine)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await self._combined_orders(combine["id"])
            out = await self._together_out(conn, application_id, department, combine, rows)
            return await ctx.finish(conn, out)

    async def _combined_orders(self, combine_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM bff.payment_orders WHERE combine_id = $1 ORDER BY created_at, out_trade_no",
                combine_id,
            )
        )

    async def _new_combine(
        self,
        ctx: IdemContext,
        principal: Principal,
        application_id: uuid.UUID,
        department: str,
        fees: list[FeeNotice],
        trade_type: str,
    ) -> asyncpg.Record:
        """The combine and one order per fee, in one transaction: either every fee's order is the
        combine's or nothing is written (a fee that got an order meanwhile decides the answer)."""
        openid = await self._payer(principal, trade_type)
        now = datetime.now(UTC).replace(microsecond=0)
        expire = min(self._expiry(fee, now) for fee in fees)
        fee_ids = [fee.fee_id for fee in fees]
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # Concurrent requests for one department wait here, then find the first one's combine.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))",
                    f"payment-combine:{application_id}:{department}",
                )
                live = await conn.fetch(
                    """
                    SELECT * FROM bff.payment_orders
                    WHERE fee_id = ANY($1::text[]) AND status NOT IN ('closed', 'failed')
                    """,
                    fee_ids,
                )
                if live:
                    combines = {r["combine_id"] for r in live}
                    if len(live) == len(fees) and len(combines) == 1 and None not in combines:
                        found = await conn.fetchrow(
                            "SELECT * FROM bff.payment_combines WHERE id = $1", live[0]["combine_id"]
                        )
                        assert found is not None
                        return found
                    raise _open_elsewhere(next((r for r in live if r["combine_id"] is None), live[0]))
                combine = await conn.fetchrow(
                    """
                    INSERT INTO bff.payment_combines
                        (id, combine_out_trade_no, person_id, application_id, department, trade_type, amount_fen,
                         time_expire)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *
                    """,
                    ctx.request_id,
                    ctx.request_id.hex,
                    principal.person_id,
                    application_id,
                    department,
                    trade_type,
                    sum(fee.total_fen for fee in fees),
                    expire,
                )
                assert combine is not None
                for fee in fees:
                    order_id = uuid.uuid5(ctx.request_id, fee.fee_id)
                    await conn.execute(
                        """
                        INSERT INTO bff.payment_orders
                            (id, case_id, person_id, fee_id, out_trade_no, trade_type, appid, mchid, amount_fen,
                             description, payer_openid, time_expire, status, next_check_at, combine_id)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'created', $13, $14)
                        """,
                        order_id,
                        fee.case_id,
                        principal.person_id,
                        fee.fee_id,
                        order_id.hex,
                        trade_type,
                        self.client.appid,
                        self.client.mchid,
                        fee.total_fen,
                        f"{fee.item_name}-缴费"[:127],
                        openid,
                        expire,
                        now + timedelta(seconds=self.check_after_s),
                        combine["id"],
                    )
                await audit.record(
                    conn,
                    subject=principal.person_id,
                    action="payment.combine_created",
                    object=f"payment_combine:{combine['id']}",
                    result=f"fees={','.join(fee_ids)} amount_fen={combine['amount_fen']}",
                    channel=principal.channel,
                )
                return combine
        except asyncpg.UniqueViolationError:
            # A fee's own order (the case's payment route) was made between our look and our write.
            raise ProblemError(
                "a fee of this department got an order meanwhile; try again",
                status=409,
                code="conflict",
                detail_zh="该部门的某项费用刚刚已下单，请重试",
            ) from None

    async def _ensure_combine_prepay(self, combine: asyncpg.Record) -> asyncpg.Record:
        """A combine the platform does not hold yet gets its prepay (the same fields every time)."""
        if combine["prepay_id"] is not None or combine["code_url"] is not None:
            return combine
        rows = await self._combined_orders(combine["id"])
        try:
            prepay = await self.client.prepay_combine(
                combine["trade_type"],
                combine_out_trade_no=combine["combine_out_trade_no"],
                sub_orders=[
                    (r["out_trade_no"], r["description"], r["amount_fen"], r["fee_id"]) for r in rows
                ],
                notify_url=self.notify_url,
                time_expire=china_time(combine["time_expire"]),
                openid=rows[0]["payer_openid"],
            )
        except WeChatPayRefused as exc:
            if exc.reason == "ORDERPAID":
                await self._sync(rows[0], "query")
                return combine
            raise ProblemError(
                exc.detail,
                status=502,
                code="payment_upstream_refused",
                detail_zh=f"微信支付拒绝了合单下单：{exc.detail}",
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchrow(
                "UPDATE bff.payment_combines SET prepay_id = $2, code_url = $3 WHERE id = $1 RETURNING *",
                combine["id"],
                prepay.prepay_id,
                prepay.code_url,
            )
            # Each fee's order carries the sheet too: paying from the case's own page opens the same one.
            await conn.execute(
                """
                UPDATE bff.payment_orders SET status = 'paying', trade_state = 'NOTPAY', prepay_id = $2,
                       code_url = $3, updated_at = now()
                WHERE combine_id = $1 AND status = 'created'
                """,
                combine["id"],
                prepay.prepay_id,
                prepay.code_url,
            )
        assert updated is not None
        return updated

    async def _together_out(
        self,
        conn: Conn,
        application_id: uuid.UUID,
        department: str,
        combine: asyncpg.Record | None,
        rows: list[asyncpg.Record],
    ) -> DepartmentPaymentOut:
        statuses = {r["status"] for r in rows}
        if statuses <= set(PAID_STATES):
            status = "paid"
        elif statuses & set(PAID_STATES):
            status = "partly_paid"
        elif statuses & set(OPEN):
            status = "paying"
        else:
            status = "closed"
        head = combine if combine is not None else rows[0]
        jsapi, app, code_url = (
            self._params(head["trade_type"], head["prepay_id"], head["code_url"])
            if status == "paying"
            else (None, None, None)
        )
        return DepartmentPaymentOut(
            id=str(head["id"]),
            application_id=str(application_id),
            department=department,
            kind="combined" if combine is not None else "single",
            status=status,  # type: ignore[arg-type]  # one of the four by construction
            trade_type=head["trade_type"],
            amount_fen=sum(r["amount_fen"] for r in rows),
            time_expire=china_time(head["time_expire"]),
            payments=[await self._out(conn, r, with_params=False) for r in rows],
            jsapi=jsapi,
            app=app,
            code_url=code_url,
        )

    # --- reading ---

    async def view(self, principal: Principal, payment_id: str) -> PaymentOut:
        """The order; while not final, the platform is asked (a client's "success" proves nothing)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.payment_orders WHERE id = $1", parse_uuid(payment_id, "payment")
        )
        row = await owned(self.pool, principal, "payment", payment_id, row)
        if principal.agent is not None:
            await self.cases.own(principal, str(row["case_id"]))  # the mandate's item topics hold here too
        if row["status"] in OPEN:
            try:
                await self._sync(row, "query")
            except (UpstreamUnavailable, BadUpstreamAnswer, WeChatPayRefused) as exc:
                log.info("payment_query_failed", error=type(exc).__name__)
            row = await self._row(row["id"])
        if row["status"] == "refunding":
            await self._sync_refunds(row["id"])
            row = await self._row(row["id"])
        return await self._out(self.pool, row, with_params=False)

    async def _out(self, conn: Conn | asyncpg.Pool, row: asyncpg.Record, *, with_params: bool) -> PaymentOut:
        refunds = await conn.fetch(
            "SELECT * FROM bff.payment_refunds WHERE order_id = $1 ORDER BY created_at", row["id"]
        )
        out = PaymentOut(
            id=str(row["id"]),
            case_id=str(row["case_id"]),
            fee_id=row["fee_id"],
            status=row["status"],
            trade_state=row["trade_state"],
            trade_type=row["trade_type"],
            out_trade_no=row["out_trade_no"],
            amount_fen=row["amount_fen"],
            paid_fen=row["paid_fen"],
            refunded_fen=row["refunded_fen"],
            currency=row["currency"],
            time_expire=china_time(row["time_expire"]),
            paid_at=_iso(row["paid_at"]),
            created_at=_iso(row["created_at"]) or "",
            combine_id=str(row["combine_id"]) if row["combine_id"] is not None else None,
            refunds=[
                RefundOut(
                    out_refund_no=r["out_refund_no"],
                    amount_fen=r["amount_fen"],
                    reason=r["reason"],
                    status=r["status"],
                    created_at=_iso(r["created_at"]) or "",
                )
                for r in refunds
            ],
        )
        if with_params and row["status"] == "paying":
            out.jsapi, out.app, out.code_url = self._params(
                row["trade_type"], row["prepay_id"], row["code_url"]
            )
        return out

    def _params(
        self, trade_type: str, prepay_id: str | None, code_url: str | None
    ) -> tuple[JsapiParams | None, AppParams | None, str | None]:
        """How the payer's client opens the payment sheet: one of the three, by channel."""
        if trade_type == "JSAPI" and prepay_id:
            params = self.client.jsapi_params(prepay_id)
            return JsapiParams(**{_snake(k): v for k, v in params.items()}), None, None
        if trade_type == "APP" and prepay_id:
            return None, AppParams(**self.client.app_params(prepay_id)), None
        if trade_type == "NATIVE":
            return None, None, code_url
        return None, None, None

    # --- the case view's port (cases.service.Payments) ---

    async def case_timeline(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> list[TimelineStep]:
        entries: list[TimelineStep] = []
        for row in await conn.fetch(
            "SELECT * FROM bff.payment_orders WHERE case_id = $1 ORDER BY created_at", case_id
        ):
            base = {"paymentId": str(row["id"]), "feeId": row["fee_id"], "amountFen": row["amount_fen"]}
            entries.append(
                self._entry(row["created_at"], "payment_created", {**base, "tradeType": row["trade_type"]})
            )
            if row["paid_at"] is not None:
                # The platform's success_time has whole seconds: never before the order itself.
                at = max(row["paid_at"], row["created_at"])
                entries.append(self._entry(at, "payment_paid", {**base, "paidFen": row["paid_fen"]}))
            if row["status"] in ("closed", "failed"):
                entries.append(self._entry(row["updated_at"], f"payment_{row['status']}", base))
            for r in await conn.fetch(
                "SELECT * FROM bff.payment_refunds WHERE order_id = $1 AND status IN ('success', 'abnormal', 'closed')",
                row["id"],
            ):
                kind = "refund_success" if r["status"] == "success" else "refund_failed"
                entries.append(
                    self._entry(
                        r["updated_at"],
                        kind,
                        {"paymentId": str(row["id"]), "refundFen": r["amount_fen"], "reason": r["reason"]},
                    )
                )
        return entries

    @staticmethod
    def _entry(at: datetime, kind: str, details: dict[str, Any]) -> TimelineStep:
        zh, en = TITLES[kind]
        return TimelineStep(at=at, kind=kind, title_zh=zh, title_en=en, details=details)

    async def current_for_fee(self, conn: Conn | asyncpg.Pool, fee_id: str) -> PaymentRef | None:
        row = await conn.fetchrow(
            """
            SELECT * FROM bff.payment_orders WHERE fee_id = $1
            ORDER BY (status NOT IN ('closed', 'failed')) DESC, created_at DESC LIMIT 1
            """,
            fee_id,
        )
        if row is None:
            return None
        return PaymentRef(
            id=row["id"],
            fee_id=fee_id,
            status=row["status"],
            amount_fen=row["amount_fen"],
            refunded_fen=row["refunded_fen"],
        )

    # --- what the platform says about an order ---

    async def receive_notification(self, headers: Any, body: bytes) -> str:
        """A WeChat Pay notification: verified, checked against our order, applied once. Raises a
        4xx problem (and audits) for anything not applied; never claims success for it."""
        try:
            verified = await callback.verify(
                headers,
                body,
                certs=self.client.certs,
                apiv3_key=self.client.apiv3_key,
                redis=self.redis,
                window_s=self.notify_window_s,
            )
        except callback.NotificationRejected as exc:
            await self._refused(exc.reason, "-", exc)
            raise
        try:
            if (
                verified.event_type.startswith("TRANSACTION.")
                and b'"combine_out_trade_no"' in verified.plaintext
            ):
                outcome = await self._apply_combine(
                    msgspec.json.decode(verified.plaintext, type=CombineTransaction), "notify"
                )
            elif verified.event_type.startswith("TRANSACTION."):
                outcome = await self._apply_transaction(
                    msgspec.json.decode(verified.plaintext, type=Transaction), "notify"
                )
            elif verified.event_type.startswith("REFUND."):
                notice = msgspec.json.decode(verified.plaintext, type=RefundNotice)
                outcome = await self._apply_refund(
                    notice.out_trade_no,
                    notice.out_refund_no,
                    notice.mchid,
                    notice.refund_status,
                    notice.amount.refund,
                    notice.refund_id,
                    notice.success_time,
                    "notify",
                )
            else:
                outcome = "mismatch:event_type"
        except (msgspec.ValidationError, msgspec.DecodeError):
            outcome = "mismatch:resource"
        if outcome == "unknown":
            exc2 = ProblemError(
                "no order of ours has that number",
                status=400,
                code="payment_order_unknown",
                detail_zh="没有该编号的订单",
            )
            await self._refused("unknown_out_trade_no", verified.notification_id, exc2)
            raise exc2
        if outcome.startswith("mismatch:"):
            exc3 = ProblemError(
                f"the notification does not match our order ({outcome[9:]})",
                status=400,
                code="payment_notification_mismatch",
                detail_zh=f"通知与我方订单不符（{outcome[9:]}）",
            )
            await self._refused(outcome, verified.notification_id, exc3)
            raise exc3
        NOTIFY_OUTCOMES.labels(outcome).inc()
        return outcome

    async def _refused(self, reason: str, notification_id: str, exc: Exception) -> None:
        NOTIFY_OUTCOMES.labels(f"rejected_{reason.split(':', maxsplit=1)[0]}").inc()
        log.warning("payment_notification_rejected", reason=reason)
        await audit.record(
            self.pool,
            subject="wechatpay",
            action="payment.notification",
            object=f"notification:{notification_id}",
            result=f"rejected:{reason}",
            channel="wechatpay",
        )

    async def _sync(self, row: asyncpg.Record, via: str) -> str:
        try:
            if row["combine_id"] is not None:
                combine = await self._combine(row["combine_id"])
                return await self._apply_combine(
                    await self.client.query_combine(combine["combine_out_trade_no"]), via
                )
            tx = await self.client.query(row["out_trade_no"])
        except WeChatPayRefused as exc:
            if exc.reason == "ORDER_NOT_EXIST":
                return "not_at_platform"
            raise
        return await self._apply_transaction(tx, via)

    async def _apply_combine(self, answer: CombineTransaction, via: str) -> str:
        """A 合单支付's sub-orders, each applied as the order it is, once the combine is checked to be
        ours with exactly our sub-orders. One outcome for the whole: the first mismatch, else paid
        when any was, else what the first one gave (they move together)."""
        combine = await self.pool.fetchrow(
            "SELECT * FROM bff.payment_combines WHERE combine_out_trade_no = $1", answer.combine_out_trade_no
        )
        if combine is None:
            return "unknown"
        if answer.combine_appid != self.client.appid or answer.combine_mchid != self.client.mchid:
            return "mismatch:combine_mchid"
        ours = {
            r["out_trade_no"]: r
            for r in await self.pool.fetch(
                "SELECT * FROM bff.payment_orders WHERE combine_id = $1", combine["id"]
            )
        }
        if {s.out_trade_no for s in answer.sub_orders} != set(ours):
            return "mismatch:sub_orders"
        transactions = answer.transactions()
        # Every sub-order checked before any is applied: a wrong one must not leave the rest paid.
        for tx in transactions:
            if wrong := _mismatch(ours[tx.out_trade_no], tx):
                return wrong
        outcomes = [await self._apply_transaction(tx, via) for tx in transactions]
        bad = next((o for o in outcomes if o.startswith("mismatch:") or o == "unknown"), None)
        return bad or ("paid" if "paid" in outcomes else outcomes[0])

    async def _apply_transaction(self, tx: Transaction, via: str) -> str:
        """Apply what the platform says about one order, once, under its row lock."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM bff.payment_orders WHERE out_trade_no = $1 FOR UPDATE", tx.out_trade_no
            )
            if row is None:
                return "unknown"
            if wrong := _mismatch(row, tx):
                return wrong
            state = tx.trade_state
            if state in ("SUCCESS", "REFUND"):
                if row["transaction_id"] is not None:
                    return (
                        "duplicate"
                        if row["transaction_id"] == tx.transaction_id
                        else "mismatch:transaction_id"
                    )
                paid = _paid(tx)
                paid_at = _at(tx.success_time) or datetime.now(UTC)
                row = await conn.fetchrow(
                    """
                    UPDATE bff.payment_orders
                       SET status = CASE WHEN status IN ('created', 'paying', 'closed', 'failed') THEN 'paid'
                                         ELSE status END,
                           trade_state = $2, transaction_id = $3, paid_fen = $4, paid_at = $5,
                           report_pending = true, next_check_at = NULL, updated_at = now()
                     WHERE id = $1 RETURNING *
                    """,
                    row["id"],
                    state,
                    tx.transaction_id,
                    paid,
                    paid_at,
                )
                assert row is not None
                await conn.execute(
                    """
                    INSERT INTO bff.payment_ledger (order_id, kind, amount_fen, external_ref, out_trade_no, via, at)
                    VALUES ($1, 'payment', $2, $3, $4, $5, $6)
                    """,
                    row["id"],
                    paid,
                    tx.transaction_id,
                    row["out_trade_no"],
                    via,
                    paid_at,
                )
                await self._tell(conn, row, "paid")
                await audit.record(
                    conn,
                    subject="wechatpay",
                    action="payment.paid",
                    object=f"payment:{row['id']}",
                    result=f"amount_fen={paid} transaction={tx.transaction_id} via={via}",
                    channel="wechatpay",
                )
                return "paid"
            if row["status"] not in OPEN:
                return "duplicate"
            new_status = {"CLOSED": "closed", "REVOKED": "closed", "PAYERROR": "failed"}.get(state)
            await conn.execute(
                """
                UPDATE bff.payment_orders SET trade_state = $2, status = coalesce($3, status), updated_at = now(),
                       next_check_at = CASE WHEN $3::text IS NULL THEN next_check_at END
                WHERE id = $1
                """,
                row["id"],
                state,
                new_status,
            )
            if new_status is None:
                return "pending"
            await self._tell(conn, await self._locked(conn, row["id"]), new_status)
            return new_status

    @staticmethod
    async def _locked(conn: Conn, order_id: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM bff.payment_orders WHERE id = $1", order_id)
        assert row is not None
        return row

    async def _tell(self, conn: Conn, row: asyncpg.Record, what: str) -> None:
        await outbox.enqueue(
            conn,
            "payment.changed",
            row["person_id"],
            f"payment:{row['id']}:{what}:{row['refunded_fen']}",
            PaymentChanged(
                payment_id=str(row["id"]),
                case_id=str(row["case_id"]),
                status=row["status"],
                amount_fen=row["amount_fen"],
                refunded_fen=row["refunded_fen"],
                occurred_at=datetime.now(UTC).isoformat(),
            ),
        )

    # --- the reconciler (a job) ---

    async def reconcile(self, batch: int = 100) -> int:
        """Orders that heard nothing: ask the platform, with backoff; close the expired ones."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.payment_orders
            WHERE status IN ('created', 'paying') AND next_check_at <= now()
            ORDER BY next_check_at LIMIT $1
            """,
            batch,
        )
        changed = 0
        for row in rows:
            try:
                if row["time_expire"] <= datetime.now(UTC):
                    outcome = await self._settle_expired(row)
                else:
                    outcome = await self._sync(row, "reconcile")
            except (UpstreamUnavailable, BadUpstreamAnswer, WeChatPayRefused) as exc:
                log.info("payment_reconcile_failed", error=type(exc).__name__)
                outcome = "pending"
            if outcome in ("pending", "not_at_platform"):
                delay = min(self.check_after_s * 2 ** min(row["checks"], 16), self.check_max_s)
                await self.pool.execute(
                    """
                    UPDATE bff.payment_orders SET checks = checks + 1,
                           next_check_at = least(now() + make_interval(secs => $2), time_expire + interval '5 seconds')
                    WHERE id = $1 AND status IN ('created', 'paying')
                    """,
                    row["id"],
                    delay,
                )
            else:
                changed += 1
        return changed

    async def _settle_expired(self, row: asyncpg.Record) -> str:
        """Past time_expire: close it at the platform, unless the platform has it paid."""
        outcome = await self._sync(row, "reconcile")
        if outcome not in ("pending", "not_at_platform"):
            return outcome
        if outcome == "pending":
            try:
                await self._close_at_platform(row)
            except WeChatPayRefused as exc:
                if exc.reason == "ORDERPAID":
                    return await self._sync(row, "reconcile")
                if exc.reason != "ORDER_NOT_EXIST":
                    raise
        async with self.pool.acquire() as conn, conn.transaction():
            closed = await conn.fetchrow(
                """
                UPDATE bff.payment_orders SET status = 'closed', trade_state = 'CLOSED', next_check_at = NULL,
                       updated_at = now()
                WHERE id = $1 AND status IN ('created', 'paying') RETURNING *
                """,
                row["id"],
            )
            if closed is None:
                return "duplicate"
            await self._tell(conn, closed, "closed")
            await audit.record(
                conn,
                subject="reconciler",
                action="payment.closed",
                object=f"payment:{row['id']}",
                result="expired",
                channel="worker",
            )
        return "closed"

    async def _close_at_platform(self, row: asyncpg.Record) -> None:
        if row["combine_id"] is None:
            await self.client.close(row["out_trade_no"])
            return
        # A sub-order closes with its whole combine (the sheet can no longer be paid as a whole).
        combine = await self._combine(row["combine_id"])
        subs = await self.pool.fetch(
            "SELECT out_trade_no FROM bff.payment_orders WHERE combine_id = $1 ORDER BY out_trade_no",
            combine["id"],
        )
        await self.client.close_combine(combine["combine_out_trade_no"], [r["out_trade_no"] for r in subs])

    async def report_paid(self, batch: int = 50) -> int:
        """Paid orders the case system has not heard of yet: tell it, once (it de-duplicates by our
        request id, derived from the order)."""
        rows = await self.pool.fetch(
            "SELECT * FROM bff.payment_orders WHERE report_pending ORDER BY paid_at LIMIT $1", batch
        )
        done = 0
        for row in rows:
            try:
                outcome = await self.cases.report_fee_paid(
                    request_id=str(uuid.uuid5(row["id"], "fee-paid")),
                    fee_id=row["fee_id"],
                    out_trade_no=row["out_trade_no"],
                    transaction_id=row["transaction_id"],
                    amount_fen=row["paid_fen"],
                    paid_at=row["paid_at"].astimezone(UTC).isoformat(),
                )
            except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
                log.info("payment_report_failed", error=type(exc).__name__)
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE bff.payment_orders SET report_pending = false, reported_at = now() WHERE id = $1",
                    row["id"],
                )
                if outcome != "reported":
                    # A permanent no from the case system (e.g. amount_mismatch): people must look.
                    await audit.record(
                        conn,
                        subject="worker",
                        action="payment.report",
                        object=f"payment:{row['id']}",
                        result=outcome,
                        channel="worker",
                    )
            done += 1
        return done

    # --- refunds ---

    async def case_event(self, conn: Conn, case: asyncpg.Record, event: CaseEvent) -> None:
        """The case events funnel's hook (cases.events.CaseEventHook), inside its transaction."""
        if event.type != "refund_requested":
            return
        data = event.data
        await self.request_refund(
            conn,
            fee_id=str(data.get("fee_id")),
            request_ref=str(data.get("refund_no") or event.event_id),
            amount_fen=int(data.get("amount_fen") or 0),
            reason=str(data.get("reason") or "退费"),
        )

    async def request_refund(
        self, conn: Conn, *, fee_id: str, request_ref: str, amount_fen: int, reason: str
    ) -> str:
        """Record a refund to make (inside the caller's transaction): 'requested', 'duplicate' or
        'refused:<why>' (audited). The total of live refunds never exceeds what was paid."""
        order = await conn.fetchrow(
            """
            SELECT * FROM bff.payment_orders WHERE fee_id = $1 AND status = ANY($2::text[])
            ORDER BY created_at DESC LIMIT 1 FOR UPDATE
            """,
            fee_id,
            list(PAID_STATES),
        )
        why = None
        if order is None:
            why = "no_paid_order"
        elif await conn.fetchval("SELECT 1 FROM bff.payment_refunds WHERE request_ref = $1", request_ref):
            return "duplicate"
        else:
            live = await conn.fetchrow(
                """
                SELECT coalesce(sum(amount_fen), 0) AS fen, count(*) AS n FROM bff.payment_refunds
                WHERE order_id = $1 AND status IN ('requested', 'processing', 'success')
                """,
                order["id"],
            )
            assert live is not None
            if amount_fen <= 0 or live["fen"] + amount_fen > order["paid_fen"]:
                why = "exceeds_paid"
            elif live["n"] >= MAX_PARTIAL_REFUNDS:
                why = "too_many_refunds"
        if why is not None or order is None:
            await audit.record(
                conn,
                subject="cases",
                action="payment.refund_requested",
                object=f"fee:{fee_id}",
                result=f"refused:{why} amount_fen={amount_fen} ref={request_ref}",
                channel="cases",
            )
            return f"refused:{why}"
        refund_id = uuid.uuid5(_REFUND_NS, request_ref)
        await conn.execute(
            """
            INSERT INTO bff.payment_refunds (id, order_id, request_ref, out_refund_no, amount_fen, reason, status)
            VALUES ($1, $2, $3, $4, $5, $6, 'requested')
            """,
            refund_id,
            order["id"],
            request_ref,
            refund_id.hex,
            amount_fen,
            reason,
        )
        row = await conn.fetchrow(
            "UPDATE bff.payment_orders SET status = 'refunding', updated_at = now() WHERE id = $1 RETURNING *",
            order["id"],
        )
        assert row is not None
        await self._tell(conn, row, f"refunding:{refund_id.hex}")
        await audit.record(
            conn,
            subject="cases",
            action="payment.refund_requested",
            object=f"payment:{order['id']}",
            result=f"amount_fen={amount_fen} out_refund_no={refund_id.hex}",
            channel="cases",
        )
        return "requested"

    async def submit_refunds(self, batch: int = 50) -> int:
        """Requested refunds go to the platform (the same out_refund_no every time: one refund);
        processing ones that heard nothing for a while are asked about."""
        rows = await self.pool.fetch(
            """
            SELECT r.*, o.out_trade_no, o.paid_fen FROM bff.payment_refunds r
            JOIN bff.payment_orders o ON o.id = r.order_id
            WHERE r.status = 'requested'
               OR (r.status = 'processing' AND r.updated_at < now() - make_interval(secs => $2))
            ORDER BY r.created_at LIMIT $1
            """,
            batch,
            self.check_after_s,
        )
        done = 0
        for r in rows:
            try:
                if r["status"] == "requested":
                    answer = await self.client.refund(
                        out_trade_no=r["out_trade_no"],
                        out_refund_no=r["out_refund_no"],
                        refund_fen=r["amount_fen"],
                        total_fen=r["paid_fen"],
                        reason=r["reason"][:80],
                        notify_url=self.notify_url,
                    )
                else:
                    answer = await self.client.query_refund(r["out_refund_no"])
            except WeChatPayRefused as exc:
                await self._refund_refused(r, exc.reason)
                continue
            except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
                log.info("refund_submit_failed", error=type(exc).__name__)
                continue
            await self._apply_refund_answer(answer, "submit")
            done += 1
        return done

    async def _refund_refused(self, r: asyncpg.Record, reason: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bff.payment_refunds SET status = 'abnormal', updated_at = now() WHERE id = $1",
                r["id"],
            )
            await self._settle_order_status(conn, r["order_id"], "refund_refused")
            await audit.record(
                conn,
                subject="wechatpay",
                action="payment.refund",
                object=f"refund:{r['out_refund_no']}",
                result=f"refused:{reason}",
                channel="wechatpay",
            )

    async def _apply_refund_answer(self, answer: Refund, via: str) -> str:
        return await self._apply_refund(
            answer.out_trade_no,
            answer.out_refund_no,
            self.client.mchid,
            answer.status,
            answer.amount.refund,
            answer.refund_id,
            answer.success_time,
            via,
        )

    async def _sync_refunds(self, order_id: uuid.UUID) -> None:
        for r in await self.pool.fetch(
            "SELECT out_refund_no FROM bff.payment_refunds WHERE order_id = $1 AND status = 'processing'",
            order_id,
        ):
            try:
                await self._apply_refund_answer(await self.client.query_refund(r["out_refund_no"]), "query")
            except (UpstreamUnavailable, BadUpstreamAnswer, WeChatPayRefused):
                return

    async def _apply_refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        mchid: str,
        status: str,
        refund_fen: int,
        refund_id: str,
        success_time: str | None,
        via: str,
    ) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            order = await conn.fetchrow(
                "SELECT * FROM bff.payment_orders WHERE out_trade_no = $1 FOR UPDATE", out_trade_no
            )
            if order is None:
                return "unknown"
            if mchid != order["mchid"]:
                return "mismatch:mchid"
            r = await conn.fetchrow(
                "SELECT * FROM bff.payment_refunds WHERE out_refund_no = $1 AND order_id = $2",
                out_refund_no,
                order["id"],
            )
            if r is None:
                return "unknown"
            if r["amount_fen"] != refund_fen:
                return "mismatch:amount"
            if r["status"] in ("success", "closed"):
                return "duplicate"
            new = {
                "SUCCESS": "success",
                "PROCESSING": "processing",
                "ABNORMAL": "abnormal",
                "CLOSED": "closed",
            }.get(status)
            if new is None:
                return "mismatch:refund_status"
            if new == r["status"]:
                return "duplicate"
            await conn.execute(
                "UPDATE bff.payment_refunds SET status = $2, refund_id = $3, updated_at = now() WHERE id = $1",
                r["id"],
                new,
                refund_id,
            )
            if new == "success":
                await conn.execute(
                    """
                    INSERT INTO bff.payment_ledger (order_id, kind, amount_fen, external_ref, out_trade_no, via, at)
                    VALUES ($1, 'refund', $2, $3, $4, $5, $6)
                    """,
                    order["id"],
                    refund_fen,
                    out_refund_no,
                    out_trade_no,
                    via,
                    _at(success_time) or datetime.now(UTC),
                )
                await conn.execute(
                    "UPDATE bff.payment_orders SET refunded_fen = refunded_fen + $2 WHERE id = $1",
                    order["id"],
                    refund_fen,
                )
                await audit.record(
                    conn,
                    subject="wechatpay",
                    action="payment.refunded",
                    object=f"payment:{order['id']}",
                    result=f"amount_fen={refund_fen} out_refund_no={out_refund_no} via={via}",
                    channel="wechatpay",
                )
            if new != "processing":
                await self._settle_order_status(conn, order["id"], f"refund:{out_refund_no}:{new}")
            return f"refund_{new}"

    async def _settle_order_status(self, conn: Conn, order_id: uuid.UUID, what: str) -> None:
        """paid / refunding / refunded / partially_refunded from the refunds as they stand."""
        row = await conn.fetchrow(
            """
            UPDATE bff.payment_orders o SET status = CASE
                    WHEN EXISTS (SELECT 1 FROM bff.payment_refunds r
                                 WHERE r.order_id = o.id AND r.status IN ('requested', 'processing')) THEN 'refunding'
                    WHEN o.refunded_fen = 0 THEN 'paid'
                    WHEN o.refunded_fen >= o.paid_fen THEN 'refunded'
                    ELSE 'partially_refunded' END,
                   updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            order_id,
        )
        assert row is not None
        await self._tell(conn, row, what)

    # --- the daily trade bill against the ledger (a job) ---

    async def check_bill(self, day: date | None = None) -> int | None:
        """Compare the platform's trade bill of a China day (default: yesterday, once) with the
        ledger. Each difference is a metric and an audit record; nothing is corrected."""
        explicit = day is not None
        if day is None:
            day = (datetime.now(UTC) + CHINA).date() - timedelta(days=1)
            if await self.pool.fetchval("SELECT 1 FROM bff.payment_bill_checks WHERE bill_date = $1", day):
                return None
        content = await self.client.trade_bill(day.isoformat())
        theirs: dict[tuple[str, str], int] = {}
        for line in (content or b"").decode("utf-8").splitlines()[1:]:
            fields = [f.lstrip("`") for f in line.split(",")]
            if len(fields) < 17:
                break  # the summary section
            if fields[9] == "SUCCESS":
                theirs[("payment", fields[6])] = _fen(fields[12])
            elif fields[9] == "REFUND":
                theirs[("refund", fields[15])] = _fen(fields[16])
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) - CHINA
        ours: dict[tuple[str, str], int] = {}
        for row in await self.pool.fetch(
            """
            SELECT l.kind, l.amount_fen, l.out_trade_no, l.external_ref FROM bff.payment_ledger l
            WHERE l.at >= $1 AND l.at < $2
            """,
            start,
            start + timedelta(days=1),
        ):
            key = row["out_trade_no"] if row["kind"] == "payment" else row["external_ref"]
            ours[(row["kind"], key)] = row["amount_fen"]
        differences: list[dict[str, Any]] = []
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                kind = (
                    "missing_in_ledger"
                    if key not in ours
                    else "missing_in_bill"
                    if key not in theirs
                    else "amount"
                )
                differences.append(
                    {
                        "kind": kind,
                        "movement": key[0],
                        "ref": key[1],
                        "billFen": theirs.get(key),
                        "ledgerFen": ours.get(key),
                    }
                )
        async with self.pool.acquire() as conn, conn.transaction():
            for d in differences:
                BILL_DIFFERENCES.labels(d["kind"]).inc()
                await audit.record(
                    conn,
                    subject="reconciler",
                    action="payment.bill_difference",
                    object=f"{d['movement']}:{d['ref']}",
                    result=f"{d['kind']} bill_fen={d['billFen']} ledger_fen={d['ledgerFen']} day={day}",
                    channel="worker",
                )
            await conn.execute(
                """
                INSERT INTO bff.payment_bill_checks (bill_date, differences, detail) VALUES ($1, $2, $3)
                ON CONFLICT (bill_date) DO UPDATE SET differences = excluded.differences,
                    detail = excluded.detail, checked_at = now()
                """,
                day,
                len(differences),
                differences,
            )
        if differences:
            log.warning("payment_bill_differences", day=day.isoformat(), count=len(differences))
        return len(differences) if explicit or differences else 0

    async def bill_tick(self) -> int | None:
        return await self.check_bill()


def _trade_type(principal: Principal) -> str:
    trade_type = TRADE_TYPES.get(principal.channel)
    if trade_type is None:
        raise ProblemError(
            "residents pay in the app, mini-program or kiosk",
            status=403,
            code="forbidden",
            detail_zh="居民请在 App、小程序或自助终端缴费",
        )
    return trade_type


def _paid(tx: Transaction) -> int:
    return tx.amount.payer_total if tx.amount.payer_total is not None else tx.amount.total


def _mismatch(row: asyncpg.Record, tx: Transaction) -> str | None:
    """What of the platform's word about an order is not our order (None when it all is)."""
    for name, ours, theirs in (
        ("appid", row["appid"], tx.appid),
        ("mchid", row["mchid"], tx.mchid),
        ("amount", row["amount_fen"], tx.amount.total),
        ("currency", row["currency"], tx.amount.currency),
    ):
        if ours != theirs:
            return f"mismatch:{name}"
    if tx.trade_state in ("SUCCESS", "REFUND") and (not tx.transaction_id or _paid(tx) != row["amount_fen"]):
        return "mismatch:amount"
    return None


def _open_elsewhere(row: asyncpg.Record) -> ProblemError:
    until = china_time(row["time_expire"])
    return ProblemError(
        f"an open {row['trade_type']} order exists for this fee until {until}",
        status=409,
        code="payment_open_elsewhere",
        detail_zh=f"该费用已有未关闭的{row['trade_type']}订单，有效至 {until}",
    )


def _fen(yuan: str) -> int:
    """`12.34` (the bill's yuan with two decimals) -> 1234 fen, without floats."""
    whole, _, cents = yuan.strip().partition(".")
    return int(whole or "0") * 100 + int((cents + "00")[:2])


def _snake(name: str) -> str:
    return {
        "appId": "app_id",
        "timeStamp": "time_stamp",
        "nonceStr": "nonce_str",
        "signType": "sign_type",
        "paySign": "pay_sign",
    }.get(name, name)
