"""WeChat's wire formats (snake_case, `errcode`/`errmsg` on every answer, HTTP 200 even on errors)."""

from __future__ import annotations

import msgspec


class StableToken(msgspec.Struct, frozen=True):
    access_token: str = ""
    expires_in: int = 0
    errcode: int = 0
    errmsg: str = ""


class CodeSession(msgspec.Struct, frozen=True):
    """jscode2session's answer. `session_key` never leaves the server: the repr hides it so that a
    stray log call cannot print it."""

    openid: str = ""
    session_key: str = ""
    unionid: str | None = None
    errcode: int = 0
    errmsg: str = ""

    def __repr__(self) -> str:
        return f"CodeSession(openid={self.openid!r}, unionid={self.unionid!r}, session_key=<hidden>)"


class Watermark(msgspec.Struct, frozen=True):
    timestamp: int
    appid: str


class PhoneInfo(msgspec.Struct, frozen=True, rename="camel"):
    phone_number: str
    pure_phone_number: str
    country_code: str
    watermark: Watermark | None = None


class PhoneNumberReply(msgspec.Struct, frozen=True):
    errcode: int = 0
    errmsg: str = ""
    phone_info: PhoneInfo | None = None


class VerifyIdReply(msgspec.Struct, frozen=True):
    errcode: int = 0
    errmsg: str = ""
    verify_id: str = ""
    expires_in: int = 0


class VerifyInfoReply(msgspec.Struct, frozen=True):
    errcode: int = 0
    errmsg: str = ""
    verify_ret: int = 0


# queryverifyinfo: 10000 is the only success; anything else is a failed or abandoned check.
VERIFY_OK = 10000


class SubscribeSent(msgspec.Struct, frozen=True):
    """subscribe/send's answer: errcode 0 with the msgid, or an errcode (43101: refused or used up)."""

    errcode: int = 0
    errmsg: str = ""
    msgid: int | None = None
