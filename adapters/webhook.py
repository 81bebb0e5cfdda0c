"""The signed webhooks of the case system, the courier and 12345: HMAC-SHA256 over
`timestamp.body`, a bounded clock window, and (where the sender names it in a header) the event id
matching the body. Nothing is trusted before the signature holds. Each sender's module keeps its
own header names and refusal class (its problem code)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from hashlib import sha256
from typing import Protocol, TypeVar

import msgspec

from adapters.errors import ProblemError


class _Event(Protocol):
    @property
    def event_id(self) -> str: ...


E = TypeVar("E", bound=_Event)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, sha256).hexdigest()


def check_signed(
    headers: Mapping[str, str],
    body: bytes,
    *,
    timestamp_header: str,
    signature_header: str,
    secret: str,
    window_s: int,
    rejected: type[ProblemError],
    now: float | None = None,
) -> None:
    timestamp = headers.get(timestamp_header, "")
    given = headers.get(signature_header, "")
    moment = time.time() if now is None else now
    if not timestamp.isdigit() or abs(moment - int(timestamp)) > window_s:
        raise rejected("timestamp missing or outside the window", detail_zh="时间戳缺失或超出允许范围")
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        raise rejected("bad signature", detail_zh="签名错误")


def named_event(
    headers: Mapping[str, str],
    body: bytes,
    event: type[E],
    *,
    event_id_header: str,
    rejected: type[ProblemError],
    what: tuple[str, str],
) -> E:
    """The (signed) body as one `event`, whose id the event id header, when sent, must name."""
    try:
        decoded = msgspec.json.decode(body, type=event)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise ProblemError(
            f"the body is not {what[0]}",
            status=400,
            code="validation_failed",
            detail_zh=f"请求体不是{what[1]}",
        ) from None
    if headers.get(event_id_header, decoded.event_id) != decoded.event_id:
        raise rejected(
            "the event id header does not name the event in the body",
            detail_zh="事件编号请求头与请求体中的事件不符",
        )
    return decoded
