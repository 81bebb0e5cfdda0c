"""Who is calling: what a verified access token says, handed to every route as `principal`."""

from __future__ import annotations

from typing import Literal

import msgspec

Channel = Literal["app", "miniprogram", "kiosk", "staff"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    person_id: str  # our own stable person id (never an ID number)
    channel: Channel
    level: int  # real-name level: 1 phone verified, 2 ID verified, 3 face verified
    session_id: str
    jti: str
    roles: tuple[str, ...] = ()
