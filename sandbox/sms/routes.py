"""The SMS gateway's API, modelled on Aliyun SendSms: `POST /sms/v1/send`, SmsReport callbacks.

Authentication: `X-Sms-AccessKeyId` and `X-Sms-Signature: sha256=<hex HMAC-SHA256 of
"{X-Sms-Timestamp}.{raw body}" under the access key secret>`, the timestamp within 5 minutes.
Authentication failures are HTTP errors (404 InvalidAccessKeyId.NotFound, 400 SignatureDoesNotMatch,
400 InvalidTimeStamp.Expired); everything else is answered HTTP 200 with `Code` (`OK` or an
`isv.*` / `isp.*` code), as Aliyun does. `out_id` is the caller's send key: once accepted, a repeat
answers the same BizId and sends nothing again.

The text sent is `【sign】` + the template with its `${variables}` filled in; up to 70 characters is
one segment, longer texts are billed and sent as 67-character segments. Per-phone frequency limits
(the carriers' rule for notification templates): 1 a minute, 5 an hour, 10 a day (rolling windows).

Delivery reports go to the configured report URL as a JSON array of one SmsReport, signed like the
requests (`X-Sms-Timestamp`, `X-Sms-Signature`); a report counts as received only when the receiver
answers 2xx with `{"code": 0}` (Aliyun's contract), otherwise it is retried. `send_time` and
`report_time` are "YYYY-MM-DD HH:MM:SS" in China Standard Time (UTC+8), as Aliyun writes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency

ACCESS_KEY_ID = os.environ.get("SANDBOX_SMS_ACCESS_KEY_ID", "sandbox-sms-key")
SECRET = os.environ.get("SANDBOX_SMS_SECRET", "sandbox-sms-secret")
SIGN_NAME = "三湘政务"
MAX_SKEW_S = 300
PARAM_MAX_CHARS = 35  # Aliyun's limit for one variable's value
REPORT_DELAYS = (0.0, 0.3, 1.0, 2.0, 5.0)
REPORT_TIMEOUT_S = 2.0
CST = timezone(timedelta(hours=8))
_PHONE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")
_VARIABLE = re.compile(r"\$\{(\w+)\}")
_tasks: set[asyncio.Task[None]] = set()


class SmsTemplate(msgspec.Struct, rename="camel"):
    template_code: str
    name: str
    kind: str  # 验证码 or 通知
    text: str

    @property
    def variables(self) -> list[str]:
        return _VARIABLE.findall(self.text)


TEMPLATES = {
    t.template_code: t
    for t in [
        SmsTemplate(
            "SMS_460100001",
            "材料补正提醒",
            "通知",
            "您申请的${item}（办件编号${caseNo}）需要补正材料，请于${deadline}前登录三湘政务小程序处理。",
        ),
        SmsTemplate(
            "SMS_460100002",
            "办件进度通知",
            "通知",
            "您申请的${item}（办件编号${caseNo}）当前状态：${status}。详情请登录三湘政务小程序查看。",
        ),
        SmsTemplate(
            "SMS_460100003",
            "预约成功通知",
            "通知",
            "您已成功预约${time}在${hall}办理${item}，预约号${ticket}，请携带有效身份证件按时到场。",
        ),
        SmsTemplate(
            "SMS_460100004",
            "预约提醒",
            "通知",
            "温馨提醒：您预约的${item}将于明天${time}在${hall}办理，请按时到场；如需取消请提前在小程序中操作。",
        ),
        SmsTemplate(
            "SMS_460100005",
            "缴费通知",
            "通知",
            "您申请的${item}需缴纳费用${amount}元，请于${deadline}前完成缴费。",
        ),
        SmsTemplate(
            "SMS_460100006", "验证码", "验证码", "您的验证码为${code}，5分钟内有效，请勿泄露于他人。"
        ),
    ]
}


def segments(text: str) -> int:
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


class SmsIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    sign_name: str
    template_code: str
    template_param: str = "{}"
    out_id: str | None = None


class SmsState:
    """In-process knobs: codes forced on the next sends, undelivered reports, limits, balance."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.forced: deque[str] = deque()
        self.undelivered: deque[str] = deque()
        self.report_url: str | None = None
        self.per_minute, self.per_hour, self.per_day = 1, 5, 10
        self.balance = 10_000_000  # segments the account can still pay for
        self.report_delay_ms = 20


STATE = SmsState()
_MESSAGES = {
    "OK": "OK",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量中存在未赋值变量",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法，只接受字符串值",
    "isv.PARAM_LENGTH_LIMIT": "参数超出长度限制",
    "isv.INVALID_PARAMETERS": "参数格式不正确",
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isp.SYSTEM_ERROR": "系统错误",
}
_ERR_MSGS = {"DELIVERED": "用户接收成功", "MK:100D": "空号", "UNDELIV": "用户无法接收", "MK:0001": "用户关机"}


def sign(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _answer(code: str, message: str | None = None, biz_id: str | None = None) -> Response[Any]:
    body: dict[str, Any] = {
        "Code": code,
        "Message": message or _MESSAGES.get(code, code),
        "RequestId": _request_id(),
    }
    if biz_id is not None:
        body["BizId"] = biz_id
    return Response(body, status_code=200)


def _auth_error(request: Request[Any, Any, Any], raw: bytes) -> tuple[int, str, str] | None:
    """(HTTP status, Code, Message) when the request is not from the account, else None."""
    if request.headers.get("x-sms-accesskeyid") != ACCESS_KEY_ID:
        return 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
    timestamp = request.headers.get("x-sms-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        return 400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
    given = request.headers.get("x-sms-signature", "").removeprefix("sha256=")
    if not hmac.compare_digest(given, sign(timestamp, raw)):
        return 400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
    return None


async def _record(
    conn: Any,
    phone: str | None,
    out_id: str | None,
    code: str,
    biz_id: str | None = None,
    duplicate: bool = False,
) -> None:
    await conn.execute(
        "INSERT INTO sandbox.sms_requests (phone, out_id, code, biz_id, duplicate) VALUES ($1, $2, $3, $4, $5)",
        phone,
        out_id,
        code,
        biz_id,
        duplicate,
    )


def render(template: SmsTemplate, raw_params: str) -> tuple[str, dict[str, str] | None, str]:
    """(code, params, text): code is "OK" when the parameters fill the template."""
    try:
        params = json.loads(raw_params)
    except ValueError:
        return "isv.INVALID_JSON_PARAM", None, ""
    if not isinstance(params, dict) or not all(isinstance(v, str | int) for v in params.values()):
        return "isv.INVALID_JSON_PARAM", None, ""
    values = {str(k): str(v) for k, v in params.items()}
    if any(not values.get(name) for name in template.variables):
        return "isv.TEMPLATE_MISSING_PARAMETERS", None, ""
    if any(len(values[name]) > PARAM_MAX_CHARS for name in template.variables):
        return "isv.PARAM_LENGTH_LIMIT", None, ""
    text = f"【{SIGN_NAME}】" + _VARIABLE.sub(lambda m: values[m.group(1)], template.text)
    return "OK", values, text


async def _accepted(conn: Any, out_id: str | None) -> str | None:
    if out_id is None:
        return None
    return await conn.fetchval("SELECT biz_id FROM sandbox.sms_messages WHERE out_id = $1", out_id)  # type: ignore[no-any-return]


@post("/v1/send", status_code=200)
async def send_sms(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    raw = await request.body()
    refused = _auth_error(request, raw)
    if refused is not None:
        status, code, message = refused
        await _record(db, None, None, code)
        return Response({"Code": code, "Message": message, "RequestId": _request_id()}, status_code=status)
    try:
        sms = msgspec.json.decode(raw, type=SmsIn)
    except msgspec.DecodeError as exc:
        await _record(db, None, None, "isv.INVALID_PARAMETERS")
        return _answer("isv.INVALID_PARAMETERS", str(exc))
    match = _PHONE.fullmatch(sms.phone)
    phone = match.group(1) if match else sms.phone

    async def refuse(code: str, message: str | None = None) -> Response[Any]:
        await _record(db, phone, sms.out_id, code)
        return _answer(code, message)

    if (seen := await _accepted(db, sms.out_id)) is not None:
        await _record(db, phone, sms.out_id, "OK", seen, duplicate=True)
        return _answer("OK", biz_id=seen)
    if STATE.forced:
        return await refuse(STATE.forced.popleft())
    if match is None:
        return await refuse("isv.MOBILE_NUMBER_ILLEGAL")
    if sms.sign_name != SIGN_NAME:
        return await refuse("isv.SMS_SIGNATURE_ILLEGAL")
    template = TEMPLATES.get(sms.template_code)
    if template is None:
        return await refuse("isv.SMS_TEMPLATE_ILLEGAL")
    code, params, text = render(template, sms.template_param)
    if code != "OK":
        return await refuse(code)
    count = segments(text)
    if STATE.balance < count:
        return await refuse("isv.AMOUNT_NOT_ENOUGH")
    biz_id = f"{secrets.randbelow(10**18):018d}^0"
    async with db.acquire() as conn, conn.transaction():
        # One phone's sends and one out_id's repeats are decided one at a time, so neither a limit
        # nor the de-duplication can be raced past.
        if sms.out_id is not None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sms-out:' || $1))", sms.out_id)
            if (seen := await _accepted(conn, sms.out_id)) is not None:
                await _record(conn, phone, sms.out_id, "OK", seen, duplicate=True)
                return _answer("OK", biz_id=seen)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sms-phone:' || $1))", phone)
        counts = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE m.sent_at > now() - interval '1 minute') AS minute,
                   count(*) FILTER (WHERE m.sent_at > now() - interval '1 hour') AS hour,
                   count(*) AS day
            FROM sandbox.sms_messages m
            LEFT JOIN sandbox.sms_limit_resets r ON r.phone = m.phone
            WHERE m.phone = $1 AND m.sent_at > now() - interval '1 day'
              AND (r.reset_at IS NULL OR m.sent_at > r.reset_at)
            """,
            phone,
        )
        assert counts is not None
        for window, limit, label in (
            ("minute", STATE.per_minute, "分钟级"),
            ("hour", STATE.per_hour, "小时级"),
            ("day", STATE.per_day, "天级"),
        ):
            if counts[window] >= limit:
                await _record(conn, phone, sms.out_id, "isv.BUSINESS_LIMIT_CONTROL")
                return _answer("isv.BUSINESS_LIMIT_CONTROL", f"触发{label}流控Permits:{limit}")
        await conn.execute(
            """
            INSERT INTO sandbox.sms_messages
                (biz_id, out_id, phone, sign_name, template_code, params, text, segments)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            biz_id,
            sms.out_id,
            phone,
            sms.sign_name,
            sms.template_code,
            params,
            text,
            count,
        )
        await _record(conn, phone, sms.out_id, "OK", biz_id)
    STATE.balance -= count
    task = asyncio.create_task(_report(db, biz_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return _answer("OK", biz_id=biz_id)


def _cst(at: datetime) -> str:
    return at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


async def _report(pool: asyncpg.Pool, biz_id: str) -> None:
    """The carrier's side: the handset receives (or not), then the gateway reports."""
    await asyncio.sleep(STATE.report_delay_ms / 1000)
    err_code = STATE.undelivered.popleft() if STATE.undelivered else "DELIVERED"
    reported = datetime.now(UTC)
    try:
        row = await pool.fetchrow(
            """
            UPDATE sandbox.sms_messages SET status = $2, err_code = $3, reported_at = $4
            WHERE biz_id = $1 RETURNING *
            """,
            biz_id,
            "delivered" if err_code == "DELIVERED" else "undelivered",
            err_code,
            reported,
        )
    except (asyncpg.PostgresError, OSError):
        return  # shutting down
    url = STATE.report_url
    if row is None or not url:
        return
    report = {
        "phone_number": row["phone"],
        "send_time": _cst(row["sent_at"]),
        "report_time": _cst(reported),
        "success": err_code == "DELIVERED",
        "err_code": err_code,
        "err_msg": _ERR_MSGS.get(err_code, "发送失败"),
        "sms_size": str(row["segments"]),
        "biz_id": biz_id,
        "out_id": row["out_id"],
    }
    body = msgspec.json.encode([report])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT_S)) as session:
        for attempt, delay in enumerate(REPORT_DELAYS, start=1):
            await asyncio.sleep(delay)
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Sms-Timestamp": timestamp,
                "X-Sms-Signature": "sha256=" + sign(timestamp, body),
            }
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    outcome = f"http_{response.status}"
                    ok = 200 <= response.status < 300 and await _acknowledged(response)
                    if 200 <= response.status < 300 and not ok:
                        outcome += "_not_acknowledged"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome, ok = type(exc).__name__, False
            try:
                await pool.execute(
                    "INSERT INTO sandbox.sms_reports (biz_id, attempt, outcome) VALUES ($1, $2, $3)",
                    biz_id,
                    attempt,
                    outcome,
                )
            except (asyncpg.PostgresError, OSError):
                return
            if ok:
                return


async def _acknowledged(response: aiohttp.ClientResponse) -> bool:
    try:
        answer = json.loads(await response.read())
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("code") == 0


router = Router(path="/sms", route_handlers=[send_sms])
