"""Verifying 12345's step webhooks: HMAC-SHA256 over `timestamp.body` (header
`X-Hotline-Signature: sha256=<hex>`), a bounded clock window, the event id header matching the
body, then the body decoded as one event. Nothing is trusted before the signature holds."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from hashlib import sha256

import msgspec

from adapters.errors import ProblemError
from adapters.hotline.schemas import HotlineEvent

TIMESTAMP = "x-hotline-timestamp"
SIGNATURE = "x-hotline-signature"
EVENT_ID = "x-hotline-event-id"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class CallbackRejected(ProblemError):
    status = 401
    code = "hotline_callback_rejected"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, sha256).hexdigest()


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, window_s: int, now: float | None = None
) -> HotlineEvent:
    """The event a webhook carries, once its signature, timestamp and event id hold."""
    timestamp = headers.get(TIMESTAMP, "")
    given = headers.get(SIGNATURE, "")
    moment = time.time() if now is None else now
    if not timestamp.isdigit() or abs(moment - int(timestamp)) > window_s:
        raise CallbackRejected(
            "timestamp missing or outside the window", detail_zh="时间戳缺失或超出允许范围"
        )
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        raise CallbackRejected("bad signature", detail_zh="签名错误")
    try:
        event = msgspec.json.decode(body, type=HotlineEvent)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise ProblemError(
            "the body is not a 12345 event",
            detail_zh="请求体不是 12345 事件",
            status=400,
            code="validation_failed",
        ) from None
    if headers.get(EVENT_ID, event.event_id) != event.event_id:
        raise CallbackRejected(
            "the event id header does not name the event in the body",
            detail_zh="事件编号请求头与请求体中的事件不符",
        )
    return event
