"""The identity provider's wire formats (OIDC names where OIDC has one; the province's own otherwise)."""

from __future__ import annotations

from typing import Literal

import msgspec


class TokenSet(msgspec.Struct, frozen=True):
    access_token: str
    token_type: str
    expires_in: int
    id_token: str
    scope: str = "openid"


class OAuthError(msgspec.Struct, frozen=True):
    error: str
    error_description: str = ""


class Resident(msgspec.Struct, frozen=True):
    """userinfo / look-up answer. `real_name_level`: L1 phone verified, L2 ID verified, L3 face verified."""

    sub: str
    name: str
    id_card_number: str
    phone_number: str
    real_name_level: Literal["L1", "L2", "L3"]

    @property
    def level(self) -> int:
        return int(self.real_name_level[1])

    def __repr__(self) -> str:
        return f"Resident(sub={self.sub!r}, level={self.real_name_level})"


class LookupReply(msgspec.Struct, frozen=True):
    found: bool
    resident: Resident | None = None
