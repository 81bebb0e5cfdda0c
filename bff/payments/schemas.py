"""Payments: what the resident's client gets (money always in integer fen), and the domain's codes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "payment_not_found": (404, "未找到该支付订单", "No such payment"),
        "no_fee_due": (409, "该办件当前没有待缴费用", "Nothing is owed on this case"),
        "fee_already_paid": (409, "该费用已缴纳", "This fee has already been paid"),
        "fee_overdue": (409, "已超过缴费期限，请联系办理部门", "The fee is past its payable-by date"),
        "payment_open_elsewhere": (
            409,
            "该费用已在其他渠道下单，请在原渠道完成支付",
            "This fee has an open order on another channel",
        ),
        "payer_unknown": (
            409,
            "未能确定付款人的微信身份，请重新登录小程序",
            "The payer's WeChat identity is unknown; sign in to the mini-program again",
        ),
        "payment_upstream_refused": (502, "微信支付拒绝了请求", "WeChat Pay refused the request"),
        "payment_notification_rejected": (401, "支付通知校验失败", "The payment notification was rejected"),
        "payment_notification_mismatch": (
            400,
            "支付通知与订单不符",
            "The payment notification does not match our order",
        ),
        "payment_order_unknown": (400, "支付通知的订单不存在", "The notification names no order of ours"),
        "department_unknown": (
            404,
            "该一件事申请中没有这个收费部门的费用",
            "No fee of this bundle is issued by that department",
        ),
    },
)

PaymentStatus = Literal[
    "created", "paying", "paid", "closed", "failed", "refunding", "refunded", "partially_refunded"
]


class JsapiParams(Camel):
    """`wx.requestPayment` in the mini-program (fields exactly as WeChat names them)."""

    app_id: str
    time_stamp: str
    nonce_str: str
    package: str
    sign_type: str
    pay_sign: str


class AppParams(Camel):
    """The App SDK's PayReq (WeChat's lower-case names)."""

    appid: str
    partnerid: str
    prepayid: str
    package: str
    noncestr: str
    timestamp: str
    sign: str


class RefundOut(Camel):
    out_refund_no: str
    amount_fen: int
    reason: str
    status: Literal["requested", "processing", "success", "abnormal", "closed"]
    created_at: str


class PaymentOut(Camel):
    id: str
    case_id: str
    fee_id: str
    status: PaymentStatus
    # WeChat's own trade_state beside ours (SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR).
    trade_state: str | None
    trade_type: Literal["JSAPI", "APP", "NATIVE"]
    out_trade_no: str
    amount_fen: int
    paid_fen: int
    refunded_fen: int
    currency: str
    time_expire: str
    paid_at: str | None
    created_at: str
    refunds: list[RefundOut]
    # Set when the fee is paid together with others of its department (合单支付): paying that
    # combined sheet pays this order.
    combine_id: str | None = None
    # How to pay, while the order is payable: one of these, by channel.
    jsapi: JsapiParams | None = None
    app: AppParams | None = None
    code_url: str | None = None


class DepartmentPaymentIn(CamelIn):
    # As the bundle's view names it (`fees.byDepartment[].department`).
    department: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class DepartmentPaymentOut(Camel):
    """One payment for every fee one department issued across a life-event bundle: a WeChat Pay
    合单支付 over the fees' orders when there are two or more, else the one fee's order."""

    id: str
    application_id: str
    department: str
    kind: Literal["combined", "single"]
    status: Literal["paying", "paid", "closed", "partly_paid"]
    trade_type: Literal["JSAPI", "APP", "NATIVE"]
    amount_fen: int
    time_expire: str
    # Every fee's own order (status, refunds), in the bundle's member order.
    payments: list[PaymentOut]
    jsapi: JsapiParams | None = None
    app: AppParams | None = None
    code_url: str | None = None
