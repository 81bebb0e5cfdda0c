"""Verifying 12345's step webhooks: HMAC-SHA256 over `timestamp.body` (header
`X-Hotline-Signature: sha256=<hex>`), a bounded clock window, the event id header matching the
body, then the body decoded as one event. Nothing is trusted before the signature holds."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.errors import ProblemError
from adapters.hotline.schemas import HotlineEvent
from adapters.webhook import check_signed, named_event, signature

__all__ = ["EVENT_ID", "SIGNATURE", "SIGNED_HEADERS", "TIMESTAMP", "CallbackRejected", "signature", "verify"]

TIMESTAMP = "x-hotline-timestamp"
SIGNATURE = "x-hotline-signature"
EVENT_ID = "x-hotline-event-id"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class CallbackRejected(ProblemError):
    status = 401
    code = "hotline_callback_rejected"


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, window_s: int, now: float | None = None
) -> HotlineEvent:
    """The event a callback carries, once its signature, timestamp and event id hold."""
    check_signed(
        headers,
        body,
        timestamp_header=TIMESTAMP,
        signature_header=SIGNATURE,
        secret=secret,
        window_s=window_s,
        rejected=CallbackRejected,
        now=now,
    )
    return named_event(
        headers,
        body,
        HotlineEvent,
        event_id_header=EVENT_ID,
        rejected=CallbackRejected,
        what=("a 12345 event", "12345 事件"),
    )
