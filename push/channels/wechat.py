"""WeChat subscribe messages through the one WeChat client (its shared access token and breaker).

Consent comes from our ledger (`bff.wechat_consents`, fed by `POST /push/wechat/subscriptions`): a
one-time accept is reserved (remaining - 1) in the same transaction that records the attempt, so two
workers cannot spend one accept. 43101 (refused or used up) is permanent: the ledger is zeroed and the
orchestrator falls back. WeChat takes no send key: an exception after the call started means the
message may have gone out, so it is a technical failure and is never sent again.
"""

from __future__ import annotations

from typing import Any

from adapters.wechat.client import WeChatClient
from push import status
from push.channels.base import ChannelClient, Outcome, Recipient
from push.metrics import CONSENT_REFUSALS
from push.templates import Rendered

_LATER = frozenset({-1, 45009})  # system busy, daily quota: WeChat did not send


class WeChatSubscribeChannel(ChannelClient):
    name = "wechat"
    resendable = False
    reserves = True

    def __init__(self, client: WeChatClient, *, state: str = "formal") -> None:
        self.client = client
        self.state = state

    async def available(self, conn: Any, recipient: Recipient, rendered: Rendered) -> str | None:
        if not rendered.wechat_template:
            return "no_template"
        if recipient.openid is None:
            return "no_wechat_binding"
        ok = await conn.fetchval(
            """
            SELECT 1 FROM bff.wechat_consents WHERE openid = $1 AND template_id = $2
               AND ((long_term AND last_result = 'accept') OR remaining > 0)
            """,
            recipient.openid,
            rendered.wechat_template,
        )
        return None if ok else "no_consent"

    async def reserve(self, conn: Any, recipient: Recipient, rendered: Rendered) -> bool:
        taken = await conn.fetchval(
            """
            UPDATE bff.wechat_consents
               SET remaining = CASE WHEN long_term THEN remaining ELSE remaining - 1 END, updated_at = now()
             WHERE openid = $1 AND template_id = $2
               AND ((long_term AND last_result = 'accept') OR remaining > 0)
            RETURNING 1
            """,
            recipient.openid,
            rendered.wechat_template,
        )
        return taken is not None

    async def send(self, conn: Any, recipient: Recipient, rendered: Rendered, send_key: str) -> Outcome:
        assert recipient.openid is not None
        try:
            answer = await self.client.send_subscribe_message(
                openid=recipient.openid,
                template_id=rendered.wechat_template,
                data=rendered.wechat_data,
                page=rendered.wechat_page,
                lang="en_US" if rendered.lang == "en" else "zh_CN",
                state=self.state,
            )
        except Exception as exc:  # the call may have reached WeChat: never repeat it
            return Outcome(status.TECHNICAL_FAILURE, reason=f"unknown_outcome:{type(exc).__name__}")
        if answer.errcode == 0 and answer.msgid is not None:
            # WeChat has put it in the resident's 服务通知: nothing later reports more than that.
            return Outcome(status.DELIVERED, provider_ref=str(answer.msgid))
        if answer.errcode == 43101:
            CONSENT_REFUSALS.labels("wechat").inc()
            await conn.execute(
                """
                UPDATE bff.wechat_consents SET remaining = 0, long_term = false, last_result = 'reject',
                       updated_at = now()
                 WHERE openid = $1 AND template_id = $2
                """,
                recipient.openid,
                rendered.wechat_template,
            )
            return Outcome(status.PERMANENT_FAILURE, reason="43101")
        if answer.errcode in _LATER:
            return Outcome(status.TEMPORARY_FAILURE, reason=str(answer.errcode))
        return Outcome(status.PERMANENT_FAILURE, reason=str(answer.errcode))
