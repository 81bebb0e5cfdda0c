"""Verifying the courier's status callbacks: HMAC-SHA256 over `timestamp.body` (header
`X-Courier-Signature: sha256=<hex>`), a bounded clock window, the event id header matching the
body, then the body decoded as one event. Nothing is trusted before the signature holds."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.courier.schemas import CourierEvent
from adapters.errors import ProblemError
from adapters.webhook import check_signed, named_event, signature

__all__ = ["EVENT_ID", "SIGNATURE", "SIGNED_HEADERS", "TIMESTAMP", "CallbackRejected", "signature", "verify"]

TIMESTAMP = "x-courier-timestamp"
SIGNATURE = "x-courier-signature"
EVENT_ID = "x-courier-event-id"
SIGNED_HEADERS = (TIMESTAMP, SIGNATURE)  # what the OpenAPI document lists as required


class CallbackRejected(ProblemError):
    status = 401
    code = "courier_callback_rejected"


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, window_s: int, now: float | None = None
) -> CourierEvent:
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
        CourierEvent,
        event_id_header=EVENT_ID,
        rejected=CallbackRejected,
        what=("a courier event", "快递事件"),
    )
