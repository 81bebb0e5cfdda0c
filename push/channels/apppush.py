"""App push through the push gateway: the resident's newest registered device. A token the
gateway calls UNREGISTERED is pruned and the next device tried; none left is a permanent failure
(the orchestrator falls back to SMS). `request_id` (our send key + the token) de-duplicates."""

from __future__ import annotations

import hashlib
from typing import Any

from adapters.pushgw.client import PushGatewayClient
from push import status
from push.channels.base import ChannelClient, Outcome, Recipient
from push.templates import Rendered


class AppPushChannel(ChannelClient):
    name = "app"

    def __init__(self, client: PushGatewayClient) -> None:
        self.client = client

    async def available(self, conn: Any, recipient: Recipient, rendered: Rendered) -> str | None:
        return None if recipient.devices else "no_device"

    async def send(self, conn: Any, recipient: Recipient, rendered: Rendered, send_key: str) -> Outcome:
        for token, platform in list(recipient.devices):
            request_id = f"{send_key}:{hashlib.sha256(token.encode()).hexdigest()[:12]}"
            sent = await self.client.send(
                request_id=request_id,
                token=token,
                platform=platform,
                title=rendered.title,
                body=rendered.body,
                data={"link": rendered.link},
            )
            if sent.outcome == "accepted":
                return Outcome(status.SENDING, provider_ref=sent.message_id, target=token)
            if sent.outcome == "unregistered":
                await prune(conn, token, "UNREGISTERED")
                recipient.devices.remove((token, platform))
                continue
            if sent.outcome == "retry":
                return Outcome(status.TEMPORARY_FAILURE, reason=sent.code)
            return Outcome(status.PERMANENT_FAILURE, reason=sent.code)
        return Outcome(status.PERMANENT_FAILURE, reason="UNREGISTERED")


async def prune(conn: Any, token: str, reason: str) -> None:
    await conn.execute(
        "UPDATE bff.push_devices SET pruned_at = now(), pruned_reason = $2 WHERE token = $1 AND pruned_at IS NULL",
        token,
        reason,
    )
