"""SMS through the SMS gateway: our registered signature and templates, `out_id` = the send key.
The number is decrypted only here, only when SMS is tried, and is never logged or stored by push."""

from __future__ import annotations

from typing import Any

from adapters.sms.client import SmsClient
from push import status
from push.channels.base import ChannelClient, Outcome, Recipient
from push.templates import Rendered


class SmsChannel(ChannelClient):
    name = "sms"

    def __init__(self, client: SmsClient) -> None:
        self.client = client

    async def available(self, conn: Any, recipient: Recipient, rendered: Rendered) -> str | None:
        if not rendered.sms_template:
            return "no_template"
        return None  # whether a number exists is known only when it is decrypted, at send time

    async def send(self, conn: Any, recipient: Recipient, rendered: Rendered, send_key: str) -> Outcome:
        phone = await recipient.phone()
        if not phone:
            return Outcome(status.PERMANENT_FAILURE, reason="no_phone")
        sent = await self.client.send(
            out_id=send_key, phone=phone, template_code=rendered.sms_template, params=rendered.sms_params
        )
        if sent.outcome == "accepted":
            return Outcome(status.SENDING, provider_ref=sent.biz_id)
        if sent.outcome == "retry":
            return Outcome(status.TEMPORARY_FAILURE, reason=sent.code)
        return Outcome(status.PERMANENT_FAILURE, reason=sent.code)
