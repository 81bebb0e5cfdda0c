"""The refresh endpoint's rules on top of `sessions.refresh`: errors, deny-list, audit, throttling."""

from __future__ import annotations

from datetime import datetime

from adapters import context
from adapters.errors import ProblemError
from auth import audit, denylist, protection, sessions
from auth.issue import Tokens, access_for
from auth.runtime import AuthRuntime

_REFUSALS = {
    "unknown": ("the refresh token is not valid", "刷新令牌无效", "refresh_token_invalid"),
    "revoked": ("the session has ended; sign in again", "会话已结束，请重新登录", "session_revoked"),
    "expired": ("the session has expired; sign in again", "会话已过期，请重新登录", "session_expired"),
    "reused": (
        "the refresh token was already used; the session has been ended",
        "刷新令牌已被使用，会话已结束",
        "refresh_token_reused",
    ),
    "wrong_device": ("this session belongs to another kiosk", "该会话属于另一台自助终端", "kiosk_mismatch"),
}


async def refresh(rt: AuthRuntime, token: str, *, ip: str, kiosk_id: str | None, now: datetime) -> Tokens:
    await protection.admit(rt, f"ip:{ip}")
    result = await sessions.refresh(
        rt.pool,
        token,
        now=now,
        grace_s=rt.config.refresh_grace_s,
        lifetimes=rt.config.lifetimes,
        kiosk_id=kiosk_id,
    )
    session = result.session
    subject = session.person_id if session else "-"
    channel = session.channel if session else "-"
    obj = f"session:{session.id}" if session else "refresh_token"

    async def note(action: str, outcome: str) -> None:
        await audit.record(
            rt.pool,
            subject=subject,
            action=action,
            object=obj,
            result=outcome,
            channel=channel,
            request_id=context.request_id.get(),
        )

    if result.outcome == "reused":
        assert session is not None
        await denylist.deny_sessions(rt.redis, [session.id], rt.deny_ttl_s)
        await note("refresh_reuse_detected", "family_revoked")
    if result.outcome not in ("rotated", "graced"):
        if result.outcome == "wrong_device" and kiosk_id:
            await protection.failed(rt, f"device:{kiosk_id}", subject=subject, channel=channel)
        await note("refresh", result.outcome)
        detail, zh, code = _REFUSALS[result.outcome]
        raise ProblemError(detail, status=401, code=code, detail_zh=zh)
    assert session is not None and result.refresh_token is not None
    access, expires_in = access_for(rt, session)
    await note("refresh", result.outcome)
    return Tokens(
        access_token=access, expires_in=expires_in, refresh_token=result.refresh_token, session=session
    )
