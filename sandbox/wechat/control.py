"""Control API of the WeChat simulation: what a phone would do (wx.login, getPhoneNumber, the face
check in the client) and knobs for error paths (high-risk users, the per-minute limit).

Subscribe messages: what the user chose in `wx.requestSubscribeMessage`, the demo templates, what was
sent, and errcodes forced on the next sends."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Body, FromPath, QueryParameter

from sandbox.wechat.routes import CODE_TTL, PUSH_TOKEN, SUBSCRIBE, SUBSCRIBE_TEMPLATES, SubscribeTemplate
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


# --- subscribe messages ---


class SubscribeChoice(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """The success result of `wx.requestSubscribeMessage`: template id -> what the user chose."""

    openid: str
    results: dict[str, Literal["accept", "reject", "ban", "filter"]]


class ForcedFailures(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    errcode: int
    count: int = 1


class SubscribeConfig(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    daily_limit: int = 1_000_000


class MessagePush(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """The developer server's message push (消息推送) settings; url None switches it off."""

    url: str | None = None
    token: str = PUSH_TOKEN


class SentEventFailures(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    error_status: Literal["fail:user block", "fail:system failed"] = "fail:user block"
    count: int = 1


@get("/subscribe/templates")
async def subscribe_templates() -> list[SubscribeTemplate]:
    return list(SUBSCRIBE_TEMPLATES.values())


async def _consents(db: asyncpg.Pool, openid: str) -> dict[str, Any]:
    rows = await db.fetch(
        """
        SELECT template_id, last_result, remaining, long_term, updated_at
        FROM sandbox.wechat_sub_consents WHERE openid = $1 ORDER BY template_id
        """,
        openid,
    )
    return {
        "openid": openid,
        "consents": [
            {
                "templateId": r["template_id"],
                "lastResult": r["last_result"],
                "remaining": r["remaining"],
                "longTerm": r["long_term"],
                "updatedAt": r["updated_at"].isoformat(),
            }
            for r in rows
        ],
    }


@post("/subscribe/consents", status_code=200)
async def record_choice(
    db: NamedDependency[asyncpg.Pool], data: Annotated[SubscribeChoice, Body()]
) -> dict[str, Any]:
    """An accept of a one-time template adds one message; of a long-term template, it allows many until
    a reject. Reject, ban (template banned by the platform) and filter (filtered for a duplicate
    title) grant nothing; ban also takes back what was granted."""
    if not 1 <= len(data.results) <= 3:
        # The client may ask for at most 3 templates in one prompt (errCode 20003 in the client).
        raise ValidationException("requestSubscribeMessage takes 1 to 3 template ids")
    unknown = set(data.results) - set(SUBSCRIBE_TEMPLATES)
    if unknown:
        raise ValidationException(f"unknown template ids: {sorted(unknown)}")
    if not await db.fetchval("SELECT 1 FROM sandbox.wechat_users WHERE openid = $1", data.openid):
        raise NotFoundException("no such user")
    async with db.acquire() as conn, conn.transaction():
        for template_id, result in data.results.items():
            long_term = SUBSCRIBE_TEMPLATES[template_id].long_term
            grant = 1 if result == "accept" and not long_term else 0
            await conn.execute(
                """
                INSERT INTO sandbox.wechat_sub_consents (openid, template_id, last_result, remaining, long_term)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (openid, template_id) DO UPDATE SET
                    last_result = excluded.last_result,
                    remaining = CASE WHEN excluded.last_result = 'ban' THEN 0
                                     ELSE sandbox.wechat_sub_consents.remaining + excluded.remaining END,
                    long_term = CASE WHEN $6 THEN excluded.long_term
                                     ELSE sandbox.wechat_sub_consents.long_term END,
                    updated_at = now()
                """,
                data.openid,
                template_id,
                result,
                grant,
                long_term and result == "accept",
                # A filtered prompt was never shown, so it changes nothing already chosen.
                (long_term and result != "filter") or result == "ban",
            )
            await conn.execute(
                "INSERT INTO sandbox.wechat_sub_choices (openid, template_id, result) VALUES ($1, $2, $3)",
                data.openid,
                template_id,
                result,
            )
    return await _consents(db, data.openid)


@get("/subscribe/consents/{openid:str}")
async def get_consents(db: NamedDependency[asyncpg.Pool], openid: FromPath[str]) -> dict[str, Any]:
    return await _consents(db, openid)


@get("/subscribe/messages")
async def sent_messages(
    db: NamedDependency[asyncpg.Pool], openid: Annotated[str | None, QueryParameter()] = None
) -> list[dict[str, Any]]:
    """Every message accepted (a msgid given), oldest first, for one openid or all."""
    rows = await db.fetch(
        """
        SELECT m.*, coalesce(
            (SELECT jsonb_agg(jsonb_build_object('attempt', e.attempt, 'outcome', e.outcome) ORDER BY e.id)
             FROM sandbox.wechat_sub_events e WHERE e.msgid = m.msgid), '[]'::jsonb) AS events
        FROM sandbox.wechat_sub_messages m WHERE $1::text IS NULL OR m.openid = $1 ORDER BY m.msgid
        """,
        openid,
    )
    return [
        {
            "msgid": r["msgid"],
            "openid": r["openid"],
            "templateId": r["template_id"],
            "page": r["page"],
            "miniprogramState": r["miniprogram_state"],
            "lang": r["lang"],
            "data": r["data"],
            "consent": r["consent"],
            "sentAt": r["sent_at"].isoformat(),
            "eventStatus": r["event_status"],
            "events": r["events"],
        }
        for r in rows
    ]


@get("/subscribe/requests")
async def received_requests(
    db: NamedDependency[asyncpg.Pool], openid: Annotated[str | None, QueryParameter()] = None
) -> list[dict[str, Any]]:
    """Every send request received, with the errcode it was answered (0 with its msgid)."""
    rows = await db.fetch(
        """
        SELECT * FROM sandbox.wechat_sub_requests WHERE $1::text IS NULL OR openid = $1 ORDER BY id
        """,
        openid,
    )
    return [
        {
            "openid": r["openid"],
            "templateId": r["template_id"],
            "errcode": r["errcode"],
            "msgid": r["msgid"],
            "body": r["body"],
            "receivedAt": r["received_at"].isoformat(),
        }
        for r in rows
    ]


@post("/subscribe/failures", status_code=200)
async def force_failures(data: Annotated[ForcedFailures, Body()]) -> dict[str, Any]:
    """The next `count` sends (with a valid token) are answered `errcode`, consuming no consent."""
    SUBSCRIBE.forced.extend([data.errcode] * data.count)
    return {"forced": list(SUBSCRIBE.forced)}


@put("/subscribe/config")
async def subscribe_config(data: Annotated[SubscribeConfig, Body()]) -> dict[str, int]:
    SUBSCRIBE.daily_limit = data.daily_limit
    return {"dailyLimit": SUBSCRIBE.daily_limit}


@put("/subscribe/push")
async def message_push(data: Annotated[MessagePush, Body()]) -> MessagePush:
    """Where `subscribe_msg_sent_event` goes after each accepted message, and the Token signing it."""
    SUBSCRIBE.push_url, SUBSCRIBE.push_token = data.url, data.token
    return data


@post("/subscribe/push-failures", status_code=200)
async def sent_event_failures(data: Annotated[SentEventFailures, Body()]) -> dict[str, list[str]]:
    """The next `count` sent events report `errorStatus` instead of success (the user blocked it)."""
    SUBSCRIBE.push_failures.extend([data.error_status] * data.count)
    return {"pushFailures": list(SUBSCRIBE.push_failures)}


@delete("/subscribe")
async def reset_subscribe(db: NamedDependency[asyncpg.Pool]) -> None:
    """Forget consents, requests, messages, sent events, forced failures, the day's count and the
    message push settings."""
    SUBSCRIBE.reset()
    await db.execute(
        """
        TRUNCATE sandbox.wechat_sub_consents, sandbox.wechat_sub_choices, sandbox.wechat_sub_requests,
            sandbox.wechat_sub_messages, sandbox.wechat_sub_events
        """
    )


router = Router(
    path="/_control/wechat",
    route_handlers=[
        mint_code,
        expire_code,
        mint_phone_code,
        set_user,
        get_user,
        finish_face,
        set_config,
        subscribe_templates,
        record_choice,
        get_consents,
        sent_messages,
        received_requests,
        force_failures,
        subscribe_config,
        message_push,
        sent_event_failures,
        reset_subscribe,
    ],
)
