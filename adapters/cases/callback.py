"""Verifying the case system's webhook deliveries: HMAC-SHA256 over `timestamp.body`, a bounded
clock window, then the body decoded as one event. Nothing is trusted before the signature holds."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from hashlib import sha256

import msgspec

from adapters.cases.schemas import CaseEvent
from adapters.errors import ProblemError

TIMESTAMP = "x-case-timestamp"
SIGNATURE = "x-case-signature"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class WebhookRejected(ProblemError):
    status = 401
    code = "webhook_rejected"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, sha256).hexdigest()


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, window_s: int, now: float | None = None
) -> CaseEvent:
    """The event a delivery carries, once its signature and timestamp hold."""
    timestamp = headers.get(TIMESTAMP, "")
    given = headers.get(SIGNATURE, "")
    moment = time.time() if now is None else now
    if not timestamp.isdigit() or abs(moment - int(timestamp)) > window_s:
        raise WebhookRejected("timestamp missing or outside the window", detail_zh="时间戳缺失或超出允许范围")
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        raise WebhookRejected("bad signature", detail_zh="签名错误")
    try:
        return msgspec.json.decode(body, type=CaseEvent)
    except msgspec.ValidationError as exc:
        raise ProblemError(
            f"not a case event: {exc}", status=400, code="validation_failed", detail_zh=f"不是案件事件：{exc}"
        ) from None
    except msgspec.DecodeError:
        raise ProblemError(
            "the body is not a JSON case event",
            status=400,
            code="validation_failed",
            detail_zh="请求体不是 JSON 格式的案件事件",
        ) from None
