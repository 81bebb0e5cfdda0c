"""Typed client for the 12345 hotline's channel API. Every mutation carries our stable request id
(12345 de-duplicates by it and answers a retry with the first answer), so those calls are marked
idempotent for the resilience layer. The channel's access key goes in every call."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import msgspec

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.hotline.schemas import (
    Attachment,
    Caller,
    Changes,
    EventReply,
    HotlineChannel,
    KbResults,
    Location,
    Refusal,
    Related,
    Satisfaction,
    Ticket,
)
from adapters.http import Reply, Upstream

T = TypeVar("T")


class HotlineRefused(ProblemError):
    """12345 said no (bad field, a ticket not found, nothing to answer or rate); `reason` is its code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(
            message or reason,
            status=status,
            code=reason,
            detail_zh=f"12345 拒绝了此请求：{message or reason}",
        )
        self.reason = reason


class HotlineClient:
    def __init__(self, upstream: Upstream, channel_key: str) -> None:
        self.upstream = upstream
        self._headers = {"Authorization": f"Bearer {channel_key}"}

    def _result(self, reply: Reply, type_: type[T]) -> T:
        if reply.status in (200, 201):
            return self.upstream.decode(reply, type_)
        if 400 <= reply.status < 500:
            try:
                refusal = msgspec.json.decode(reply.body, type=Refusal).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise HotlineRefused(reply.status, f"http_{reply.status}", "") from None
            raise HotlineRefused(reply.status, refusal.code, refusal.message)
        self.upstream.record_malformed()
        raise BadUpstreamAnswer(f"12345 answered {reply.status}", detail_zh=f"12345 返回 {reply.status}")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await self.upstream.call(method, path, headers=self._headers, **kwargs)

    @staticmethod
    def filing(
        *,
        request_id: str,
        kind: str,
        content: str,
        caller: Caller,
        channel: HotlineChannel,
        anonymous: bool,
        location: Location | None,
        related: Related,
        attachments: list[Attachment],
        notify_url: str | None,
    ) -> dict[str, Any]:
        """The body of a filing. 12345 de-duplicates by request id AND refuses the same id with other
        bytes, so a caller that may have to send it again keeps this body and sends exactly it."""
        return {
            "request_id": request_id,
            "kind": kind,
            "content": content,
            "caller": msgspec.to_builtins(caller),
            "channel": channel,
            "anonymous": anonymous,
            "location": msgspec.to_builtins(location),
            "related": msgspec.to_builtins(related),
            "attachments": msgspec.to_builtins(attachments),
            "notify_url": notify_url,
        }

    async def send_filing(self, body: dict[str, Any]) -> Ticket:
        reply = await self._call("POST", "/v1/tickets", json=body, idempotent=True)
        return self._result(reply, Ticket)

    async def file(self, **fields: Any) -> Ticket:
        return await self.send_filing(self.filing(**fields))

    async def ticket(self, ticket_no: str) -> Ticket:
        reply = await self._call("GET", f"/v1/tickets/{quote(ticket_no, safe='')}")
        return self._result(reply, Ticket)

    async def reply(
        self,
        *,
        request_id: str,
        ticket_no: str,
        info_request_id: str,
        text: str,
        attachments: list[Attachment],
    ) -> EventReply:
        reply = await self._call(
            "POST",
            f"/v1/tickets/{quote(ticket_no, safe='')}/replies",
            json={
                "request_id": request_id,
                "info_request_id": info_request_id,
                "text": text,
                "attachments": msgspec.to_builtins(attachments),
            },
            idempotent=True,
        )
        return self._result(reply, EventReply)

    async def rate(
        self, *, request_id: str, ticket_no: str, satisfaction: Satisfaction, resolved: bool, comment: str
    ) -> EventReply:
        reply = await self._call(
            "POST",
            f"/v1/tickets/{quote(ticket_no, safe='')}/rating",
            json={
                "request_id": request_id,
                "satisfaction": satisfaction,
                "resolved": resolved,
                "comment": comment,
            },
            idempotent=True,
        )
        return self._result(reply, EventReply)

    async def changes(self, since: int, limit: int = 200) -> Changes:
        reply = await self._call("GET", "/v1/changes", params={"since": str(since), "limit": str(limit)})
        return self._result(reply, Changes)

    async def kb_search(self, q: str, limit: int = 3) -> KbResults:
        reply = await self._call("GET", "/v1/kb/search", params={"q": q, "limit": str(limit)})
        return self._result(reply, KbResults)
