"""Verifying the case system's webhook deliveries: HMAC-SHA256 over `timestamp.body`, a bounded
clock window, then the body decoded as one event. Nothing is trusted before the signature holds."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from adapters.cases.schemas import CaseEvent
from adapters.errors import ProblemError
from adapters.webhook import check_signed, signature

__all__ = ["SIGNATURE", "SIGNED_HEADERS", "TIMESTAMP", "WebhookRejected", "signature", "verify"]

TIMESTAMP = "x-case-timestamp"
SIGNATURE = "x-case-signature"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class WebhookRejected(ProblemError):
    status = 401
    code = "webhook_rejected"


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, window_s: int, now: float | None = None
) -> CaseEvent:
    """The event a delivery carries, once its signature and timestamp hold."""
    check_signed(
        headers,
        body,
        timestamp_header=TIMESTAMP,
        signature_header=SIGNATURE,
        secret=secret,
        window_s=window_s,
        rejected=WebhookRejected,
        now=now,
    )
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
