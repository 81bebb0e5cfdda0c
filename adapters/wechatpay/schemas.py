"""WeChat Pay v3's wire formats (snake_case; money in integer fen)."""

from __future__ import annotations

import msgspec


class Amount(msgspec.Struct, frozen=True):
    total: int
    currency: str = "CNY"
    payer_total: int | None = None
    payer_currency: str | None = None


class Payer(msgspec.Struct, frozen=True):
    openid: str


class Transaction(msgspec.Struct, frozen=True):
    """An order as the platform holds it (query answer or the decrypted payment notification)."""

    appid: str
    mchid: str
    out_trade_no: str
    trade_state: str
    amount: Amount
    trade_state_desc: str = ""
    transaction_id: str | None = None
    trade_type: str | None = None
    success_time: str | None = None
    payer: Payer | None = None
    attach: str = ""


class SubOrderAmount(msgspec.Struct, frozen=True):
    total_amount: int
    currency: str = "CNY"
    payer_amount: int | None = None


class SubOrder(msgspec.Struct, frozen=True):
    """One sub-order of a 合单支付 as the platform holds it."""

    mchid: str
    out_trade_no: str
    trade_state: str
    amount: SubOrderAmount
    transaction_id: str | None = None
    trade_type: str | None = None
    success_time: str | None = None
    attach: str = ""


class CombineTransaction(msgspec.Struct, frozen=True):
    """A 合单支付 (query answer or the decrypted payment notification): one sheet, its sub-orders."""

    combine_appid: str
    combine_mchid: str
    combine_out_trade_no: str
    sub_orders: list[SubOrder]
    combine_payer_info: Payer | None = None

    def transactions(self) -> list[Transaction]:
        """Each sub-order as the one order it is (what is checked and applied, one by one)."""
        return [
            Transaction(
                appid=self.combine_appid,
                mchid=s.mchid,
                out_trade_no=s.out_trade_no,
                trade_state=s.trade_state,
                amount=Amount(
                    total=s.amount.total_amount, currency=s.amount.currency, payer_total=s.amount.payer_amount
                ),
                transaction_id=s.transaction_id,
                trade_type=s.trade_type,
                success_time=s.success_time,
                payer=self.combine_payer_info,
                attach=s.attach,
            )
            for s in self.sub_orders
        ]


class RefundAmount(msgspec.Struct, frozen=True):
    total: int
    refund: int
    currency: str = "CNY"
    payer_total: int | None = None
    payer_refund: int | None = None


class Refund(msgspec.Struct, frozen=True):
    """A refund as the platform holds it (create/query answer)."""

    refund_id: str
    out_refund_no: str
    out_trade_no: str
    status: str
    amount: RefundAmount
    transaction_id: str | None = None
    success_time: str | None = None


class RefundNotice(msgspec.Struct, frozen=True):
    """The decrypted refund notification."""

    mchid: str
    out_trade_no: str
    out_refund_no: str
    refund_id: str
    refund_status: str
    amount: RefundAmount
    transaction_id: str | None = None
    success_time: str | None = None


class Prepay(msgspec.Struct, frozen=True):
    prepay_id: str | None = None
    code_url: str | None = None


class EncryptedResource(msgspec.Struct, frozen=True):
    algorithm: str
    ciphertext: str
    nonce: str
    associated_data: str = ""
    original_type: str = ""


class Notification(msgspec.Struct, frozen=True):
    id: str
    event_type: str
    resource: EncryptedResource
    create_time: str = ""
    resource_type: str = ""
    summary: str = ""


class CertificateEntry(msgspec.Struct, frozen=True):
    serial_no: str
    encrypt_certificate: EncryptedResource
    effective_time: str = ""
    expire_time: str = ""


class Certificates(msgspec.Struct, frozen=True):
    data: list[CertificateEntry]


class BillLink(msgspec.Struct, frozen=True):
    download_url: str
    hash_type: str = ""
    hash_value: str = ""


class ErrorAnswer(msgspec.Struct, frozen=True):
    code: str
    message: str = ""
