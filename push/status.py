"""Delivery states, in GOV.UK Notify's vocabulary (`app/constants.py` there).

created: recorded, nothing sent yet. sending: a provider accepted it, its receipt is awaited.
delivered: the provider (or the inbox) confirmed it. permanent-failure: this channel will never
reach the resident (43101, an unregistered token, an empty number): fall back. temporary-failure:
worth another try later (quota, 5xx) — retried with backoff, a failure once the tries are spent.
technical-failure: our side failed or the outcome is unknown (a WeChat send that may have gone
out is never sent again).
"""

from __future__ import annotations

from typing import Literal

Status = Literal[
    "created", "sending", "delivered", "permanent-failure", "temporary-failure", "technical-failure"
]
CREATED: Status = "created"
SENDING: Status = "sending"
DELIVERED: Status = "delivered"
PERMANENT_FAILURE: Status = "permanent-failure"
TEMPORARY_FAILURE: Status = "temporary-failure"
TECHNICAL_FAILURE: Status = "technical-failure"
FINAL: frozenset[str] = frozenset({DELIVERED, PERMANENT_FAILURE, TECHNICAL_FAILURE})

Channel = Literal["inbox", "wechat", "app", "sms"]
