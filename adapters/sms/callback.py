"""Verifying SmsReport callbacks: signed like the requests (HMAC-SHA256 over `timestamp.body`),
the timestamp within 5 minutes; the body is a JSON array of reports. The gateway counts a report
received only when answered `{"code": 0}`."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

import msgspec

from adapters.errors import ProblemError
from adapters.sms.client import sign

WINDOW_S = 300
TIMESTAMP = "x-sms-timestamp"
SIGNATURE = "x-sms-signature"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required
ACK = {"code": 0, "msg": "成功"}


class SmsReport(msgspec.Struct, frozen=True):
    biz_id: str
    success: bool
    err_code: str
    out_id: str | None = None
    report_time: str | None = None


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, now: float | None = None
) -> list[SmsReport]:
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
        return msgspec.json.decode(body, type=list[SmsReport])
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise ProblemError(
            "not an SmsReport array", status=400, code="validation_failed", detail_zh="不是短信状态报告数组"
        ) from None
