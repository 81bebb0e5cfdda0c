"""What every external channel shares (GOV.UK Notify's `app/clients/` is the model): a name, a way
to say whether it can reach this resident at all, and one send that answers in Notify's vocabulary.

A channel never decides what happens next: it reports `delivered` / `sending` (the provider took
it), `permanent-failure` (fall back), `temporary-failure` (retry later) or `technical-failure`
(unknown outcome: never resend); the orchestrator (`push/notifier.py`) acts on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from push.status import Channel, Status
from push.templates import Rendered


@dataclass
class Recipient:
    """Who to reach, loaded once per notification. `phone` is read only when SMS is tried."""

    person_id: str
    openid: str | None
    devices: list[tuple[str, str]]  # (token, platform), newest first
    phone: Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Outcome:
    status: Status
    provider_ref: str | None = None
    reason: str | None = None
    target: str | None = None  # which device token an app push went to


class ChannelClient(ABC):
    name: Channel
    # True: the provider de-duplicates by our send key, so a send whose outcome is unknown may be
    # repeated with the same key. False (WeChat subscribe): a started attempt is never repeated.
    resendable: bool = True
    # Whether `reserve` takes something (then the attempt is recorded in a transaction with it).
    reserves: bool = False

    @abstractmethod
    async def available(self, conn: Any, recipient: Recipient, rendered: Rendered) -> str | None:
        """None when this channel can reach the resident; else why not (no consent, no device …)."""

    async def reserve(self, conn: Any, recipient: Recipient, rendered: Rendered) -> bool:
        """Take what the send uses up (a one-time consent) inside the attempt's transaction."""
        return True

    @abstractmethod
    async def send(self, conn: Any, recipient: Recipient, rendered: Rendered, send_key: str) -> Outcome:
        """Send once under `send_key`. `conn` runs single statements (the pool: nothing is held across the call)."""
