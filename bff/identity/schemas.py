"""Request and response bodies of the identity routes (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Opaque = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class WeChatLoginBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    code: Code


class WeChatPhoneBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    code: Code
    binding_token: Opaque


class AppLoginBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    code: Code
    code_verifier: Annotated[str, msgspec.Meta(min_length=43, max_length=128)]
    redirect_uri: Annotated[str, msgspec.Meta(min_length=8, max_length=512, pattern=r"^https?://")]


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    refresh_token: Opaque


class LogoutBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    everywhere: bool = False


class FaceFinishBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    verify_id: Opaque


class TokenResponse(msgspec.Struct, rename="camel"):
    access_token: str
    expires_in: int
    session_id: str
    person_id: str
    channel: str
    level: int
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    binding_required: bool = False


class BindingResponse(msgspec.Struct, rename="camel"):
    binding_token: str
    expires_in: int
    binding_required: bool = True


class FaceStartResponse(msgspec.Struct, rename="camel"):
    verify_id: str
    expires_in: int


class LogoutResponse(msgspec.Struct, rename="camel"):
    ended_sessions: int


class SessionInfo(msgspec.Struct, rename="camel"):
    id: str
    channel: str
    level: int


class MeResponse(msgspec.Struct, rename="camel"):
    person_id: str
    name: str
    id_number: str | None
    phone: str | None
    level: int
    session: SessionInfo


class SessionView(msgspec.Struct, rename="camel"):
    id: str
    channel: str
    level: int
    device: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class SessionList(msgspec.Struct, rename="camel"):
    items: list[SessionView]
    next_cursor: str | None = None


class KioskRegisterBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    kiosk_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{3,64}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    hall_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]  # base64 of the raw key
    algorithm: str = "ed25519"


class KioskView(msgspec.Struct, rename="camel"):
    kiosk_id: str
    name: str
    hall_id: str
    algorithm: str
    status: str
