"""The answer shape the booking, case and 好差评 systems share.

2xx carries the resource; a 4xx carries a refusal `{"error": code, "message": ...}` (each upstream's
own `Refusal` struct) that the caller decides about; anything else is an unusable answer.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import msgspec

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Reply, Upstream

T = TypeVar("T")


class RefusalShape(Protocol):
    @property
    def error(self) -> str: ...

    @property
    def message(self) -> str: ...


R = TypeVar("R", bound=RefusalShape)


class Refused(ProblemError, Generic[R]):
    """The upstream said no; `reason` is its error code, `refusal` the whole answer."""

    def __init__(self, status: int, refusal: R) -> None:
        super().__init__(
            refusal.message or refusal.error,
            status=status,
            code=refusal.error,
            detail_zh=f"上游系统拒绝了此请求：{refusal.message or refusal.error}",
        )
        self.reason = refusal.error
        self.refusal = refusal


def result(
    upstream: Upstream,
    reply: Reply,
    type_: type[T],
    *,
    refusal: type[R],
    refused: type[Refused[R]],
    label: str,
) -> T:
    """Decode a success, raise `refused` for a 4xx refusal, BadUpstreamAnswer for the rest."""
    if reply.status in (200, 201):
        return upstream.decode(reply, type_)
    if 400 <= reply.status < 500:
        try:
            answer = msgspec.json.decode(reply.body, type=refusal)
        except msgspec.DecodeError:
            # Every upstream's Refusal takes `error` and defaults the rest.
            answer = refusal(error=f"http_{reply.status}")  # type: ignore[call-arg]
        raise refused(reply.status, answer)
    upstream.record_malformed()
    raise BadUpstreamAnswer(f"{label} answered {reply.status}", detail_zh=f"{label} 返回 {reply.status}")
