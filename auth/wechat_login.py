"""Mini-program identity: `wx.login` code -> openid -> the bound person, binding by phone, and
step-up to L3 by WeChat face verification.

A WeChat account proves possession of a phone at most, so a mini-program session starts at no more
than L2 even for a person the identity provider knows at L3; L3 needs a face check in this session.
`session_key` is kept only encrypted and is never returned or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

import msgspec

from adapters import context
from adapters.errors import ProblemError
from adapters.wechat.client import WeChatError
from adapters.wechat.schemas import VERIFY_OK
from auth import audit, persons, protection, sessions
from auth.issue import Tokens, access_for, logged_in, start_session
from auth.principal import Principal
from auth.runtime import AuthRuntime

BINDING_TTL_S = 600
_SESSION_LEVEL_CAP = 2


class Pending(msgspec.Struct, frozen=True):
    openid: str
    unionid: str | None
    session_key_enc: bytes


class BindingRequired(msgspec.Struct, frozen=True):
    binding_token: str
    expires_in: int


def _raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _binding_key(token: str) -> str:
    return "sx:auth:bind:" + hashlib.sha256(token.encode()).hexdigest()


async def _audit(rt: AuthRuntime, subject: str, action: str, obj: str, result: str) -> None:
    await audit.record(
        rt.pool,
        subject=subject,
        action=action,
        object=obj,
        result=result,
        channel="miniprogram",
        request_id=context.request_id.get(),
    )


async def login(rt: AuthRuntime, code: str, *, ip: str, now: datetime) -> Tokens | BindingRequired:
    protection.check_code(code, wechat=True)
    await protection.admit(rt, f"ip:{ip}")
    try:
        found = await rt.wechat.code_to_session(code)
    except WeChatError as exc:
        await _audit(rt, "-", "login", "wechat", exc.code)
        raise
    await protection.admit(rt, f"openid:{found.openid}")
    session_key_enc = rt.crypto.encrypt("session_key", found.session_key)
    bound = await persons.bound_person(rt.pool, found.openid)
    if bound is None:
        token = secrets.token_urlsafe(32)
        pending = Pending(found.openid, found.unionid, session_key_enc)
        await rt.redis.set(_binding_key(token), msgspec.msgpack.encode(pending), ex=BINDING_TTL_S)
        await _audit(rt, "-", "login", "wechat", "binding_required")
        return BindingRequired(token, BINDING_TTL_S)
    person_id, level = bound
    await persons.touch_wechat(rt.pool, found.openid, session_key_enc)
    tokens = await start_session(
        rt,
        person_id=person_id,
        channel="miniprogram",
        level=min(level, _SESSION_LEVEL_CAP),
        now=now,
        openid=found.openid,
    )
    return await logged_in(rt, tokens, f"openid:{found.openid}")


async def bind_phone(
    rt: AuthRuntime, binding_token: str, phone_code: str, *, ip: str, now: datetime
) -> Tokens:
    protection.check_code(phone_code, wechat=True)
    await protection.admit(rt, f"ip:{ip}")
    raw = await rt.redis.get(_binding_key(binding_token))
    if raw is None:
        await _audit(rt, "-", "bind", "wechat", "binding_token_invalid")
        raise ProblemError(
            "the binding token is invalid or has expired; log in again",
            status=401,
            code="binding_token_invalid",
            detail_zh="绑定凭证无效或已过期，请重新登录",
        )
    pending = msgspec.msgpack.decode(_raw(raw), type=Pending)
    await protection.admit(rt, f"openid:{pending.openid}")
    try:
        phone = await rt.wechat.phone_number(phone_code)
    except WeChatError as exc:
        await protection.failed(rt, f"openid:{pending.openid}", subject="-", channel="miniprogram")
        await _audit(rt, "-", "bind", "wechat", exc.code)
        raise
    phone_key = "phone:" + rt.crypto.blind_index("phone", phone).hex()[:32]
    await protection.admit(rt, phone_key)
    resident = await rt.idp.lookup(phone=phone)
    if resident is None:
        await _audit(rt, "-", "bind", "wechat", "identity_not_found")
        raise ProblemError(
            "no real-name identity uses this phone; register with the provincial identity service first",
            status=404,
            code="identity_not_found",
            detail_zh="没有使用该手机号的实名身份，请先在省统一身份认证平台注册",
        )
    person = await persons.upsert_resident(rt.pool, rt.crypto, resident)
    await persons.bind_wechat(
        rt.pool,
        openid=pending.openid,
        unionid=pending.unionid,
        person_id=person.id,
        session_key_enc=pending.session_key_enc,
    )
    await rt.redis.delete(_binding_key(binding_token))
    tokens = await start_session(
        rt,
        person_id=person.id,
        channel="miniprogram",
        level=min(person.level, _SESSION_LEVEL_CAP),
        now=now,
        openid=pending.openid,
    )
    await protection.succeeded(rt, f"openid:{pending.openid}", phone_key)
    await _audit(rt, person.id, "bind", "wechat", "success")
    await _audit(rt, person.id, "login", f"session:{tokens.session.id}", "success")
    return tokens


class FaceStarted(msgspec.Struct, frozen=True):
    verify_id: str
    expires_in: int


class _FacePending(msgspec.Struct, frozen=True):
    session_id: str
    out_seq_no: str


def _face_key(verify_id: str) -> str:
    return "sx:auth:face:" + hashlib.sha256(verify_id.encode()).hexdigest()


async def _session_and_person(
    rt: AuthRuntime, principal: Principal
) -> tuple[sessions.Session, persons.Person]:
    session = await sessions.get(rt.pool, principal.session_id)
    person = await persons.load(rt.pool, rt.crypto, principal.person_id)
    if session is None or session.openid is None or person is None or person.id_number is None:
        raise ProblemError(
            "face verification needs a bound WeChat session",
            status=409,
            code="face_not_available",
            detail_zh="人脸核验需要已绑定的微信会话",
        )
    return session, person


async def face_start(rt: AuthRuntime, principal: Principal) -> FaceStarted:
    await protection.admit(rt, f"session:{principal.session_id}")
    session, person = await _session_and_person(rt, principal)
    assert session.openid is not None and person.id_number is not None
    out_seq_no = uuid.uuid4().hex
    verify_id, expires_in = await rt.wechat.face_verify_id(
        openid=session.openid, out_seq_no=out_seq_no, cert_name=person.name, cert_no=person.id_number
    )
    pending = _FacePending(session.id, out_seq_no)
    await rt.redis.set(_face_key(verify_id), msgspec.msgpack.encode(pending), ex=max(60, expires_in))
    return FaceStarted(verify_id, expires_in)


async def face_finish(rt: AuthRuntime, principal: Principal, verify_id: str) -> Tokens:
    raw = await rt.redis.get(_face_key(verify_id))
    pending = msgspec.msgpack.decode(_raw(raw), type=_FacePending) if raw else None
    if pending is None or pending.session_id != principal.session_id:
        raise ProblemError(
            "unknown or expired face verification",
            status=404,
            code="face_verification_not_found",
            detail_zh="人脸核验不存在或已过期",
        )
    session, person = await _session_and_person(rt, principal)
    assert session.openid is not None and person.id_number is not None
    verdict = await rt.wechat.face_verify_result(
        openid=session.openid,
        verify_id=verify_id,
        out_seq_no=pending.out_seq_no,
        cert_name=person.name,
        cert_no=person.id_number,
    )
    await rt.redis.delete(_face_key(verify_id))
    if verdict != VERIFY_OK:
        await protection.failed(rt, f"openid:{session.openid}", subject=person.id, channel="miniprogram")
        await _audit(rt, person.id, "step_up", f"session:{session.id}", f"failed_{verdict}")
        raise ProblemError(
            "face verification did not succeed",
            status=422,
            code="face_verification_failed",
            extra={"verifyRet": verdict},
            detail_zh="人脸核验未通过",
        )
    await sessions.set_level(rt.pool, session.id, 3)
    token, expires_in = access_for(rt, session, level=3)
    await _audit(rt, person.id, "step_up", f"session:{session.id}", "success_L3")
    return Tokens(
        access_token=token,
        expires_in=expires_in,
        refresh_token=None,
        session=msgspec.structs.replace(session, level=3),
    )
