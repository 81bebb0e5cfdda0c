"""Control API of the WeChat simulation: what a phone would do (wx.login, getPhoneNumber, the face
check in the client) and knobs for error paths (high-risk users, the per-minute limit)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath

from sandbox.wechat.routes import CODE_TTL
from sandbox.wechat.state import STATE


class MintCode(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    openid: str | None = None
    unionid: str | None = None


class PhoneCode(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    phone_number: str


class UserFlags(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    risky: bool


class FaceResult(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    verify_ret: int = 10000


class Config(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    login_per_minute: int = 100


@post("/codes", status_code=201)
async def mint_code(db: NamedDependency[asyncpg.Pool], data: Annotated[MintCode, Body()]) -> dict[str, Any]:
    """What `wx.login()` gives the mini-program: a code for this (possibly new) WeChat user."""
    openid = data.openid or "o" + secrets.token_urlsafe(20)
    unionid = data.unionid if data.unionid is not None else "u" + secrets.token_urlsafe(20)
    await db.execute(
        """
        INSERT INTO sandbox.wechat_users (openid, unionid, session_key) VALUES ($1, $2, $3)
        ON CONFLICT (openid) DO NOTHING
        """,
        openid,
        unionid or None,
        base64.b64encode(secrets.token_bytes(16)).decode(),
    )
    code = secrets.token_urlsafe(24)
    await db.execute(
        "INSERT INTO sandbox.wechat_codes (code, openid, expires_at) VALUES ($1, $2, $3)",
        code,
        openid,
        datetime.now(UTC) + CODE_TTL,
    )
    stored = await db.fetchval("SELECT unionid FROM sandbox.wechat_users WHERE openid = $1", openid)
    return {"code": code, "openid": openid, "unionid": stored}


@post("/codes/{code:str}/expire", status_code=200)
async def expire_code(db: NamedDependency[asyncpg.Pool], code: FromPath[str]) -> dict[str, str]:
    await db.execute(
        "UPDATE sandbox.wechat_codes SET expires_at = now() - interval '1 second' WHERE code = $1", code
    )
    return {"code": code}


@post("/phone-codes", status_code=201)
async def mint_phone_code(
    db: NamedDependency[asyncpg.Pool], data: Annotated[PhoneCode, Body()]
) -> dict[str, str]:
    """What `getPhoneNumber` gives the mini-program after the user agrees."""
    code = secrets.token_urlsafe(24)
    await db.execute(
        "INSERT INTO sandbox.wechat_phone_codes (code, phone_number, expires_at) VALUES ($1, $2, $3)",
        code,
        data.phone_number,
        datetime.now(UTC) + CODE_TTL,
    )
    return {"code": code}


@put("/users/{openid:str}")
async def set_user(
    db: NamedDependency[asyncpg.Pool], openid: FromPath[str], data: Annotated[UserFlags, Body()]
) -> dict[str, Any]:
    done = await db.execute(
        "UPDATE sandbox.wechat_users SET risky = $2 WHERE openid = $1", openid, data.risky
    )
    if done.endswith(" 0"):
        raise NotFoundException("no such user")
    return {"openid": openid, "risky": data.risky}


@get("/users/{openid:str}")
async def get_user(db: NamedDependency[asyncpg.Pool], openid: FromPath[str]) -> dict[str, Any]:
    """Includes the current `session_key`, so tests can prove the BFF never lets it out."""
    row = await db.fetchrow("SELECT * FROM sandbox.wechat_users WHERE openid = $1", openid)
    if row is None:
        raise NotFoundException("no such user")
    return {
        "openid": row["openid"],
        "unionid": row["unionid"],
        "sessionKey": row["session_key"],
        "risky": row["risky"],
    }


@post("/face/{verify_id:str}", status_code=200)
async def finish_face(
    db: NamedDependency[asyncpg.Pool], verify_id: FromPath[str], data: Annotated[FaceResult, Body()]
) -> dict[str, Any]:
    """The resident completing (or failing) `wx.requestFacialVerify` in the client."""
    done = await db.execute(
        "UPDATE sandbox.wechat_face SET verify_ret = $2 WHERE verify_id = $1", verify_id, data.verify_ret
    )
    if done.endswith(" 0"):
        raise NotFoundException("no such verify_id")
    return {"verifyId": verify_id, "verifyRet": data.verify_ret}


@put("/config")
async def set_config(data: Annotated[Config, Body()]) -> dict[str, int]:
    STATE.login_per_minute = data.login_per_minute
    return {"loginPerMinute": STATE.login_per_minute}


router = Router(
    path="/_control/wechat",
    route_handlers=[mint_code, expire_code, mint_phone_code, set_user, get_user, finish_face, set_config],
)
