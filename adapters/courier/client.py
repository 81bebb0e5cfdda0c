"""Typed client for the courier. Creating a shipment carries our stable request id (the courier
de-duplicates by it), so a retry after a lost answer returns the same waybill and the call is
marked idempotent for the resilience layer."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

import msgspec

from adapters.courier.schemas import Changes, Recipient, Refusal, Sender, ShipmentCreated, Tracking
from adapters.http import Reply, Upstream
from adapters.refusal import Refused, result

T = TypeVar("T")


class CourierRefused(Refused[Refusal]):
    """The courier said no (bad phone, bad region, request id reused); `reason` is its code."""


class CourierClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _result(self, reply: Reply, type_: type[T]) -> T:
        return result(self.upstream, reply, type_, refusal=Refusal, refused=CourierRefused, label="courier")

    async def create(
        self,
        *,
        request_id: str,
        project_no: str,
        sender: Sender,
        recipient: Recipient,
        notify_url: str | None,
    ) -> ShipmentCreated:
        reply = await self.upstream.call(
            "POST",
            "/v1/shipments",
            json={
                "request_id": request_id,
                "project_no": project_no,
                "sender": msgspec.to_builtins(sender),
                "recipient": msgspec.to_builtins(recipient),
                "notify_url": notify_url,
            },
            idempotent=True,
        )
        return self._result(reply, ShipmentCreated)

    async def track(self, waybill_no: str) -> Tracking:
        reply = await self.upstream.call("GET", f"/v1/shipments/{quote(waybill_no, safe='')}")
        return self._result(reply, Tracking)

    async def changes(self, since: int, limit: int = 200) -> Changes:
        reply = await self.upstream.call(
            "GET", "/v1/changes", params={"since": str(since), "limit": str(limit)}
        )
        return self._result(reply, Changes)
