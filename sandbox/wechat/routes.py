"""WeChat's server API as the mini-program backend sees it: HTTP 200 with `errcode` on errors.

- `POST /cgi-bin/stable_token`: the same token until it expires, unless `force_refresh`.
- `GET /sns/jscode2session`: single-use codes valid 5 minutes; 40029 bad code, 45011 more than the
  per-user limit a minute, 40226 high-risk user; a fresh `session_key` per login.
- `POST /wxa/business/getuserphonenumber`: single-use phone codes (from `getPhoneNumber`).
- `POST /cityservice/face/identify/getverifyid` and `queryverifyinfo`: face verification (人脸核身).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.params import Body, QueryParameter

from sandbox.wechat.state import APPS, STATE

CODE_TTL = timedelta(minutes=5)
TOKEN_TTL = timedelta(hours=2)


def _err(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}"}


def _app_error(appid: str, secret: str) -> dict[str, Any] | None:
    if appid not in APPS:
        return _err(40013, "invalid appid")
    if not hmac.compare_digest(APPS[appid], secret):
        return _err(40125, "invalid appsecret")
    return None


async def _token_ok(db: asyncpg.Pool, access_token: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT expires_at FROM sandbox.wechat_tokens WHERE token = $1", access_token)
    if row is None:
        return _err(40001, "invalid credential, access_token is invalid or not latest")
    if row["expires_at"] < datetime.now(UTC):
        return _err(42001, "access_token expired")
    return None


@post("/cgi-bin/stable_token", status_code=200)
async def stable_token(
    db: NamedDependency[asyncpg.Pool], data: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    if data.get("grant_type") != "client_credential":
        return _err(40002, "invalid grant_type")
    appid, secret = str(data.get("appid", "")), str(data.get("secret", ""))
    error = _app_error(appid, secret)
    if error:
        return error
    now = datetime.now(UTC)
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM sandbox.wechat_tokens WHERE appid = $1 FOR UPDATE", appid)
        if row is None or row["expires_at"] < now or data.get("force_refresh") is True:
            token = secrets.token_urlsafe(96)
            expires = now + TOKEN_TTL
            await conn.execute(
                """
                INSERT INTO sandbox.wechat_tokens (appid, token, expires_at) VALUES ($1, $2, $3)
                ON CONFLICT (appid) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
                """,
                appid,
                token,
                expires,
            )
        else:
            token, expires = row["token"], row["expires_at"]
    return {"access_token": token, "expires_in": int((expires - now).total_seconds())}


@get("/sns/jscode2session")
async def jscode2session(
    db: NamedDependency[asyncpg.Pool],
    appid: Annotated[str, QueryParameter()] = "",
    secret: Annotated[str, QueryParameter()] = "",
    js_code: Annotated[str, QueryParameter()] = "",
    grant_type: Annotated[str, QueryParameter()] = "",
) -> dict[str, Any]:
    error = _app_error(appid, secret)
    if error:
        return error
    if grant_type != "authorization_code":
        return _err(40002, "invalid grant_type")
    if not js_code:
        return _err(41008, "missing code")
    now = datetime.now(UTC)
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT c.*, u.unionid, u.risky FROM sandbox.wechat_codes c JOIN sandbox.wechat_users u USING (openid)
            WHERE c.code = $1 FOR UPDATE OF c
            """,
            js_code,
        )
        if row is None or row["used_at"] is not None or row["expires_at"] < now:
            return _err(40029, "invalid code")
        await conn.execute("UPDATE sandbox.wechat_codes SET used_at = $2 WHERE code = $1", js_code, now)
        if STATE.over_limit(row["openid"]):
            return _err(45011, "api minute-quota reach limit  mustslower  retry next minute")
        if row["risky"]:
            return _err(40226, "high risk user")
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        await conn.execute(
            "UPDATE sandbox.wechat_users SET session_key = $2 WHERE openid = $1", row["openid"], session_key
        )
    answer: dict[str, Any] = {"openid": row["openid"], "session_key": session_key}
    if row["unionid"]:
        answer["unionid"] = row["unionid"]
    return answer


@post("/wxa/business/getuserphonenumber", status_code=200)
async def get_user_phone_number(
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, Any], Body()],
    access_token: Annotated[str, QueryParameter()] = "",
) -> dict[str, Any]:
    error = await _token_ok(db, access_token)
    if error:
        return error
    now = datetime.now(UTC)
    row = await db.fetchrow(
        """
        UPDATE sandbox.wechat_phone_codes SET used_at = $2
        WHERE code = $1 AND used_at IS NULL AND expires_at > $2 RETURNING phone_number
        """,
        str(data.get("code", "")),
        now,
    )
    if row is None:
        return _err(40029, "invalid code")
    phone = row["phone_number"]
    return {
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone,
            "purePhoneNumber": phone,
            "countryCode": "86",
            "watermark": {"timestamp": int(time.time()), "appid": next(iter(APPS))},
        },
    }


def cert_hash(cert_info: dict[str, Any]) -> str:
    text = "cert_type={}&cert_name={}&cert_no={}".format(
        cert_info.get("cert_type", ""), cert_info.get("cert_name", ""), cert_info.get("cert_no", "")
    )
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@post("/cityservice/face/identify/getverifyid", status_code=200)
async def get_verify_id(
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, Any], Body()],
    access_token: Annotated[str, QueryParameter()] = "",
) -> dict[str, Any]:
    error = await _token_ok(db, access_token)
    if error:
        return error
    cert = data.get("cert_info")
    if not isinstance(cert, dict) or cert.get("cert_type") != "IDENTITY_CARD" or not data.get("openid"):
        return _err(47001, "data format error")
    if not data.get("out_seq_no"):
        return _err(47001, "data format error")
    verify_id = secrets.token_urlsafe(32)
    await db.execute(
        """
        INSERT INTO sandbox.wechat_face (verify_id, openid, out_seq_no, cert_hash, expires_at)
        VALUES ($1, $2, $3, $4, $5)
        """,
        verify_id,
        str(data["openid"]),
        str(data["out_seq_no"]),
        cert_hash(cert),
        datetime.now(UTC) + timedelta(hours=1),
    )
    return {"errcode": 0, "errmsg": "ok", "verify_id": verify_id, "expires_in": 3600}


@post("/cityservice/face/identify/queryverifyinfo", status_code=200)
async def query_verify_info(
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, Any], Body()],
    access_token: Annotated[str, QueryParameter()] = "",
) -> dict[str, Any]:
    error = await _token_ok(db, access_token)
    if error:
        return error
    row = await db.fetchrow(
        "SELECT * FROM sandbox.wechat_face WHERE verify_id = $1", str(data.get("verify_id", ""))
    )
    if row is None or row["expires_at"] < datetime.now(UTC):
        return _err(89301, "verify_id not exist or expired")
    if (
        row["openid"] != data.get("openid")
        or row["out_seq_no"] != data.get("out_seq_no")
        or row["cert_hash"] != data.get("cert_hash")
    ):
        return _err(89302, "verify info mismatch")
    if row["verify_ret"] is None:
        return _err(89303, "user has not finished face verification")
    return {"errcode": 0, "errmsg": "ok", "verify_ret": row["verify_ret"]}


router = Router(
    path="/wechat",
    route_handlers=[stable_token, jscode2session, get_user_phone_number, get_verify_id, query_verify_info],
)
