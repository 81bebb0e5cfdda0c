"""WeChat's server API as the mini-program backend sees it: HTTP 200 with `errcode` on errors.

- `POST /cgi-bin/stable_token`: the same token until it expires, unless `force_refresh`.
- `GET /sns/jscode2session`: single-use codes valid 5 minutes; 40029 bad code, 45011 more than the
  per-user limit a minute, 40226 high-risk user; a fresh `session_key` per login.
- `POST /wxa/business/getuserphonenumber`: single-use phone codes (from `getPhoneNumber`).
- `POST /cityservice/face/identify/getverifyid` and `queryverifyinfo`: face verification (人脸核身).
- `POST /cgi-bin/message/subscribe/send`: subscribe messages (订阅消息) against the sandbox's own consent
  ledger (what the user chose in `wx.requestSubscribeMessage`, set through the control API). WeChat
  takes no send key here, so a repeated call sends again: the caller must de-duplicate before it calls.
  The msgid is the receipt; when a message push URL is configured, `subscribe_msg_sent_event` follows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import deque
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import aiohttp
import asyncpg
import msgspec
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


# --- subscribe messages ---


class SubscribeTemplate(msgspec.Struct, rename="camel"):
    template_id: str
    title: str
    keywords: dict[str, str]  # keyword key (its type plus a number, as WeChat names them) -> label
    long_term: bool  # 长期订阅: only for 政务民生 accounts; one accept allows many messages


# A fixed demo set picked in the 公众平台 for this mini-program (ids shaped like the real ones).
SUBSCRIBE_TEMPLATES = {
    t.template_id: t
    for t in [
        SubscribeTemplate(
            "sxCaseProgress-0001-LongTermGovServiceTmpl01",
            "办件进度通知",
            {
                "thing1": "事项名称",
                "character_string2": "办件编号",
                "phrase3": "办理状态",
                "time4": "更新时间",
            },
            True,
        ),
        SubscribeTemplate(
            "sxShipment-0002-LongTermGovServiceTemplate2",
            "证照寄递通知",
            {"thing1": "证照名称", "character_string2": "运单号", "phrase3": "寄递状态"},
            True,
        ),
        SubscribeTemplate(
            "sxSupplement-0003-OneTimeTemplateBuZheng003",
            "材料补正提醒",
            {
                "thing1": "事项名称",
                "character_string2": "办件编号",
                "thing3": "补正说明",
                "date4": "截止日期",
            },
            False,
        ),
        SubscribeTemplate(
            "sxFeeDue-0004-OneTimeTemplatePaymentDue0004",
            "缴费通知",
            {"thing1": "缴费项目", "amount2": "缴费金额", "date3": "缴费期限"},
            False,
        ),
        SubscribeTemplate(
            "sxBooking-0005-OneTimeTemplateAppointment05",
            "预约成功通知",
            {"thing1": "预约事项", "thing2": "办理地点", "time3": "预约时间", "character_string4": "预约号"},
            False,
        ),
        SubscribeTemplate(
            "sxReminder-0006-OneTimeTemplateTomorrow0006",
            "预约提醒",
            {"thing1": "预约事项", "time2": "预约时间", "thing3": "温馨提示"},
            False,
        ),
    ]
}

_HAN = r"\u4e00-\u9fff"
_DATE = r"(\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{2}-\d{2})"
_CLOCK = r"\d{1,2}:\d{2}(:\d{2})?"
_ONE_TIME = rf"({_DATE}( {_CLOCK})?|{_CLOCK})"
# WeChat's documented value rules per keyword type: (max length, allowed shape).
KEYWORD_RULES: dict[str, tuple[int, re.Pattern[str]]] = {
    "thing": (20, re.compile(r".+", re.S)),
    "phrase": (5, re.compile(rf"[{_HAN}]+")),
    "number": (32, re.compile(r"[+-]?\d+(\.\d+)?")),
    "letter": (32, re.compile(r"[A-Za-z]+")),
    "symbol": (5, re.compile(r"[^\w\s]+")),
    "character_string": (32, re.compile(r"[\x21-\x7e]+")),
    "time": (64, re.compile(rf"{_ONE_TIME}(~{_ONE_TIME})?")),
    "date": (64, re.compile(rf"{_DATE}( {_CLOCK})?(~{_DATE}( {_CLOCK})?)?")),
    "amount": (14, re.compile(r"[¥$€£]?\d{1,10}(\.\d{1,2})?元?")),
    "phone_number": (17, re.compile(r"[\d+\-() ]+")),
    "car_number": (8, re.compile(rf"[{_HAN}A-Z0-9]+")),
    "name": (20, re.compile(rf"[{_HAN}]{{1,10}}|[A-Za-z ]{{1,20}}")),
}


def keyword_error(key: str, entry: Any) -> str | None:
    """Why a `data` entry breaks its keyword's rule, or None when it is fine."""
    value = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        return f"data.{key}.value is empty"
    limit, shape = KEYWORD_RULES[key.rstrip("0123456789")]
    if len(value) > limit:
        return f"data.{key}.value exceeds limit {limit}"
    if not shape.fullmatch(value):
        return f"data.{key}.value invalid"
    return None


class SubscribeState:
    """In-process knobs: errcodes forced on the next sends, the app's daily call quota, and the
    developer server's message push URL (for `subscribe_msg_sent_event`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.forced: deque[int] = deque()
        self.daily_limit = 1_000_000
        self.sent: dict[date, int] = {}
        self.push_url: str | None = None
        self.push_token = PUSH_TOKEN
        self.push_failures: deque[str] = deque()  # ErrorStatus of the next sent events


# The Token configured for the message push (消息推送) in the 公众平台: it signs each push.
PUSH_TOKEN = os.environ.get("SANDBOX_WECHAT_PUSH_TOKEN", "sandbox-wechat-push-token")
PUSH_DELAYS = (0.0, 0.3, 1.0)  # WeChat tries a push three times
PUSH_TIMEOUT_S = 2.0  # WeChat waits 5 s; shorter here so tests of a slow server stay short
_push_tasks: set[asyncio.Task[None]] = set()


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    """The message push signature: SHA-1 of the sorted Token, timestamp and nonce, concatenated."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324


async def _push_sent_event(
    pool: asyncpg.Pool, url: str, token: str, msgid: int, openid: str, template_id: str, status: str
) -> None:
    """`subscribe_msg_sent_event` to the developer server (JSON mode, plain text), retried."""
    await asyncio.sleep(0.02)
    event = {
        "ToUserName": "gh_sanxiang00001",
        "FromUserName": openid,
        "CreateTime": int(time.time()),
        "MsgType": "event",
        "Event": "subscribe_msg_sent_event",
        "List": {
            "TemplateId": template_id,
            "MsgID": str(msgid),
            "ErrorCode": "0" if status == "success" else "10005",
            "ErrorStatus": status,
        },
    }
    body = msgspec.json.encode(event)
    try:
        await pool.execute(
            "UPDATE sandbox.wechat_sub_messages SET event_status = $2 WHERE msgid = $1", msgid, status
        )
    except (asyncpg.PostgresError, OSError):
        return  # shutting down
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PUSH_TIMEOUT_S)) as session:
        for attempt, delay in enumerate(PUSH_DELAYS, start=1):
            await asyncio.sleep(delay)
            timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
            params = {
                "signature": push_signature(token, timestamp, nonce),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            try:
                async with session.post(
                    url, params=params, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    outcome, ok = f"http_{response.status}", 200 <= response.status < 300
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome, ok = type(exc).__name__, False
            try:
                await pool.execute(
                    "INSERT INTO sandbox.wechat_sub_events (msgid, attempt, outcome) VALUES ($1, $2, $3)",
                    msgid,
                    attempt,
                    outcome,
                )
            except (asyncpg.PostgresError, OSError):
                return
            if ok:
                return


SUBSCRIBE = SubscribeState()
_SUB_ERRORS = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40037: "invalid template_id",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
}


async def _record_sub(conn: Any, body: dict[str, Any], errcode: int, msgid: int | None = None) -> None:
    await conn.execute(
        """
        INSERT INTO sandbox.wechat_sub_requests (openid, template_id, body, errcode, msgid)
        VALUES ($1, $2, $3, $4, $5)
        """,
        str(body.get("touser")) if body.get("touser") is not None else None,
        str(body.get("template_id")) if body.get("template_id") is not None else None,
        body,
        errcode,
        msgid,
    )


@post("/cgi-bin/message/subscribe/send", status_code=200)
async def subscribe_send(
    db: NamedDependency[asyncpg.Pool],
    data: Annotated[dict[str, Any], Body()],
    access_token: Annotated[str, QueryParameter()] = "",
) -> dict[str, Any]:
    async def refuse(errcode: int, detail: str = "") -> dict[str, Any]:
        await _record_sub(db, data, errcode)
        return _err(errcode, f"{_SUB_ERRORS.get(errcode, 'error')} {detail}".strip())

    token_error = await _token_ok(db, access_token)
    if token_error:
        await _record_sub(db, data, int(token_error["errcode"]))
        return token_error
    if SUBSCRIBE.forced:
        return await refuse(SUBSCRIBE.forced.popleft())
    today = datetime.now(UTC).date()
    if SUBSCRIBE.sent.get(today, 0) >= SUBSCRIBE.daily_limit:
        return await refuse(45009)
    openid, template_id = data.get("touser"), data.get("template_id")
    if not isinstance(openid, str) or not await db.fetchval(
        "SELECT 1 FROM sandbox.wechat_users WHERE openid = $1", openid
    ):
        return await refuse(40003)
    template = SUBSCRIBE_TEMPLATES.get(template_id) if isinstance(template_id, str) else None
    if template is None:
        return await refuse(40037)
    state = data.get("miniprogram_state", "formal")
    lang = data.get("lang", "zh_CN")
    page = data.get("page")
    fields = data.get("data")
    if (
        state not in {"developer", "trial", "formal"}
        or lang not in {"zh_CN", "en_US", "zh_HK", "zh_TW"}
        or (page is not None and not isinstance(page, str))
        or not isinstance(fields, dict)
    ):
        return await refuse(47001)
    for key in sorted(set(template.keywords) | set(fields)):
        problem_text = (
            f"data.{key} not in template"
            if key not in template.keywords
            else keyword_error(key, fields.get(key))
        )
        if problem_text:
            return await refuse(47003, problem_text)
    async with db.acquire() as conn, conn.transaction():
        # One statement decides and uses the consent, so two concurrent sends cannot share one accept.
        long_term = await conn.fetchval(
            """
            UPDATE sandbox.wechat_sub_consents
            SET remaining = CASE WHEN long_term THEN remaining ELSE remaining - 1 END, updated_at = now()
            WHERE openid = $1 AND template_id = $2 AND (long_term OR remaining > 0)
            RETURNING long_term
            """,
            openid,
            template.template_id,
        )
        if long_term is None:
            await _record_sub(conn, data, 43101)
            return _err(43101, _SUB_ERRORS[43101])
        msgid = int(await conn.fetchval("SELECT nextval('sandbox.wechat_sub_msgid')"))
        await conn.execute(
            """
            INSERT INTO sandbox.wechat_sub_messages
                (msgid, openid, template_id, page, miniprogram_state, lang, data, consent)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            msgid,
            openid,
            template.template_id,
            page,
            state,
            lang,
            fields,
            "long_term" if long_term else "one_time",
        )
        await _record_sub(conn, data, 0, msgid)
    SUBSCRIBE.sent[today] = SUBSCRIBE.sent.get(today, 0) + 1
    if SUBSCRIBE.push_url:
        # Decided now, in the order the sends were accepted, not when the push task runs.
        status = SUBSCRIBE.push_failures.popleft() if SUBSCRIBE.push_failures else "success"
        task = asyncio.create_task(
            _push_sent_event(
                db, SUBSCRIBE.push_url, SUBSCRIBE.push_token, msgid, openid, template.template_id, status
            )
        )
        _push_tasks.add(task)
        task.add_done_callback(_push_tasks.discard)
    return {"errcode": 0, "errmsg": "ok", "msgid": msgid}


router = Router(
    path="/wechat",
    route_handlers=[
        stable_token,
        jscode2session,
        get_user_phone_number,
        get_verify_id,
        query_verify_info,
        subscribe_send,
    ],
)
