"""The SMS gateway (modelled on Aliyun SendSms): registered signature and templates, `out_id` as
our send key (a repeat answers the first BizId and sends nothing), per-phone frequency limits.

Everything but authentication is answered HTTP 200 with a `Code`: `OK`, `isv.*` (our request or the
number is wrong: permanent), `isv.BUSINESS_LIMIT_CONTROL` (the carriers' per-phone limit: later),
`isp.*` (their side: later).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Literal

import msgspec

from adapters.errors import BadUpstreamAnswer, UpstreamUnavailable
from adapters.http import Upstream

Outcome = Literal["accepted", "invalid", "retry"]
UNREACHED = "UNREACHED"  # our side: the gateway could not be reached
_LATER = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.AMOUNT_NOT_ENOUGH"})


class SmsSent(msgspec.Struct, frozen=True):
    outcome: Outcome
    biz_id: str | None = None
    code: str | None = None


class _Answer(msgspec.Struct, rename="pascal"):
    code: str = ""
    message: str | None = None
    biz_id: str | None = None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class SmsClient:
    def __init__(self, upstream: Upstream, access_key_id: str, secret: str, sign_name: str) -> None:
        self.upstream = upstream
        self._key_id = access_key_id
        self._secret = secret
        self.sign_name = sign_name

    async def send(self, *, out_id: str, phone: str, template_code: str, params: dict[str, str]) -> SmsSent:
        message = {
            "phone": phone,
            "sign_name": self.sign_name,
            "template_code": template_code,
            "template_param": msgspec.json.encode(params).decode(),
            "out_id": out_id,
        }
        raw = msgspec.json.encode(message)
        timestamp = str(int(time.time()))
        try:
            reply = await self.upstream.call(
                "POST",
                "/v1/send",
                json=message,
                headers={
                    "X-Sms-AccessKeyId": self._key_id,
                    "X-Sms-Timestamp": timestamp,
                    "X-Sms-Signature": sign(self._secret, timestamp, raw),
                },
                idempotent=True,  # out_id de-duplicates at the gateway
            )
        except (UpstreamUnavailable, BadUpstreamAnswer):
            return SmsSent("retry", None, UNREACHED)
        answer = self.upstream.decode(reply, _Answer)
        if reply.status == 200 and answer.code == "OK" and answer.biz_id:
            return SmsSent("accepted", biz_id=answer.biz_id)
        if answer.code in _LATER or answer.code.startswith("isp."):
            return SmsSent("retry", code=answer.code)
        return SmsSent("invalid", code=answer.code or f"http_{reply.status}")
