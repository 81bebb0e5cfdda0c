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
    # Set when an agent acts for this principal under a 代办 mandate (X-Acting-For): the agent's own
    # person id and the mandate. person_id is then the principal's, so ownership follows them.
    agent: str | None = None
    mandate_id: str | None = None
    # The item topics that mandate limits the agent to (empty: any), and their item codes (None:
    # any item; see auth.acting.check_item).
    categories: tuple[str, ...] = ()
    item_codes: tuple[str, ...] | None = None
