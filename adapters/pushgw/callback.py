"""Verifying the push gateway's receipts: HMAC-SHA256 over `timestamp.body` under the app secret,
the timestamp within 5 minutes, then the body decoded as one receipt."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Literal

import msgspec

from adapters.errors import ProblemError
from adapters.pushgw.client import sign

WINDOW_S = 300
TIMESTAMP = "x-pushgw-timestamp"
SIGNATURE = "x-pushgw-signature"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class PushReceipt(msgspec.Struct, frozen=True):
    message_id: str
    request_id: str
    status: Literal["delivered", "failed"]
    at: str
    reason: str | None = None


def verify(headers: Mapping[str, str], body: bytes, *, secret: str, now: float | None = None) -> PushReceipt:
    timestamp = headers.get(TIMESTAMP, "")
    moment = time.time() if now is None else now
    if not timestamp.isdigit() or abs(moment - int(timestamp)) > WINDOW_S:
        raise ProblemError(
            "timestamp missing or outside the window",
            status=401,
            code="push_callback_rejected",
            detail_zh="时间戳缺失或超出允许范围",
        )
    if not hmac.compare_digest(sign(secret, timestamp, body), headers.get(SIGNATURE, "")):
        raise ProblemError("bad signature", status=401, code="push_callback_rejected", detail_zh="签名错误")
    try:
        return msgspec.json.decode(body, type=PushReceipt)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise ProblemError(
            "not a push receipt", status=400, code="validation_failed", detail_zh="不是推送回执"
        ) from None
