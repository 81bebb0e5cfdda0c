"""The app push gateway (vendor-neutral: APNs, FCM, HMS behind it): one signed send per message.

`request_id` is our send key: the gateway answers a repeat with the first message_id and sends
nothing again, so a send whose answer was lost may be repeated safely with the same key.
Requests are signed `X-Pushgw-Signature: sha256=HMAC(secret, "{timestamp}.{body}")`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Literal

import msgspec

from adapters.errors import BadUpstreamAnswer, UpstreamUnavailable
from adapters.http import Upstream

Outcome = Literal["accepted", "unregistered", "invalid", "retry"]
UNREACHED = "UNREACHED"  # our side: the gateway could not be reached (a provider code otherwise)


class PushSent(msgspec.Struct, frozen=True):
    outcome: Outcome
    message_id: str | None = None
    code: str | None = None


class _Answer(msgspec.Struct):
    message_id: str | None = None
    code: str | None = None
    message: str | None = None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class PushGatewayClient:
    def __init__(self, upstream: Upstream, app_key: str, secret: str, callback_url: str | None) -> None:
        self.upstream = upstream
        self._app_key = app_key
        self._secret = secret
        self.callback_url = callback_url

    async def send(
        self, *, request_id: str, token: str, platform: str, title: str, body: str, data: dict[str, Any]
    ) -> PushSent:
        message: dict[str, Any] = {
            "request_id": request_id,
            "token": token,
            "platform": platform,
            "title": title,
            "body": body,
            "data": data,
        }
        if self.callback_url:
            message["callback_url"] = self.callback_url
        raw = msgspec.json.encode(message)
        timestamp = str(int(time.time()))
        try:
            # Signed bytes must be the bytes sent: the layer encodes `json=` itself, so the body
            # goes as pre-encoded JSON through a dict that encodes to the same bytes.
            reply = await self.upstream.call(
                "POST",
                "/v1/messages",
                json=msgspec.json.decode(raw),
                headers={
                    "X-Pushgw-App-Key": self._app_key,
                    "X-Pushgw-Timestamp": timestamp,
                    "X-Pushgw-Signature": sign(self._secret, timestamp, raw),
                },
                idempotent=True,  # request_id de-duplicates at the gateway
            )
        except (UpstreamUnavailable, BadUpstreamAnswer):
            return PushSent("retry", None, UNREACHED)
        answer = self.upstream.decode(reply, _Answer)
        if reply.status == 200 and answer.message_id:
            return PushSent("accepted", message_id=answer.message_id)
        if answer.code == "UNREGISTERED":
            return PushSent("unregistered", code=answer.code)
        if reply.status in (429, 500, 503):
            return PushSent("retry", code=answer.code)
        return PushSent("invalid", code=answer.code or f"http_{reply.status}")
