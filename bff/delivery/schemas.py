"""Mailing a case's result: the request, the delivery with its tracking, the courier's callback."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "delivery_not_found": (404, "未找到该邮寄", "No such delivery"),
        "item_not_mailable": (422, "该事项的办理结果不支持邮寄", "Results of this item cannot be mailed"),
        "no_result_to_mail": (409, "该办件尚无可邮寄的办理结果", "This case has no result to mail yet"),
        "delivery_already_requested": (
            409,
            "该办件的结果已在邮寄中",
            "The result of this case is already being mailed",
        ),
        "courier_refused": (422, "快递公司拒绝了寄件", "The courier refused the shipment"),
        "courier_callback_rejected": (401, "快递回调校验失败", "The courier callback was rejected"),
    },
)

DeliveryStatus = Literal[
    "requesting", "created", "picked_up", "in_transit", "out_for_delivery", "delivered", "failed", "returned"
]


class DeliveryIn(CamelIn):
    address_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="one of my addresses")]


class RecipientOut(Camel):
    """Masked: the full values went to the courier only."""

    name: str
    phone: str
    address: str
    region_code: str


class TrackingEventOut(Camel):
    seq: int
    at: str
    status: str
    place: str
    description: str


class DeliveryOut(Camel):
    id: str
    case_id: str
    project_no: str | None
    carrier: str
    waybill_no: str | None
    status: DeliveryStatus
    recipient: RecipientOut
    hall_name: str
    events: list[TrackingEventOut]
    created_at: str
    updated_at: str


class CourierNotifyOutcome(Camel):
    outcome: Literal["applied", "duplicate", "unknown_shipment"]
