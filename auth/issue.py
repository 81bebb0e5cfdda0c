"""Starting a session: a refresh-token family in PostgreSQL and the first access token."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters import context
from auth import audit, protection, sessions
from auth.principal import Channel
from auth.runtime import AuthRuntime
from auth.sessions import Session


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    expires_in: int
    refresh_token: str | None
    session: Session


def access_ttl(rt: AuthRuntime, channel: str) -> int:
    """Never longer than the session may stay idle (kiosk: 3 minutes)."""
    return min(rt.tokens.ttl_s, rt.config.lifetimes[channel].idle_s)


def access_for(rt: AuthRuntime, session: Session, level: int | None = None) -> tuple[str, int]:
    issued = rt.tokens.issue(
        subject=session.person_id,
        session_id=session.id,
        channel=session.channel,
        level=level if level is not None else session.level,
        ttl_s=access_ttl(rt, session.channel),
        kiosk_id=session.kiosk_id,
    )
    return issued.token, issued.expires_in


async def start_session(
    rt: AuthRuntime,
    *,
    person_id: str,
    channel: Channel,
    level: int,
    now: datetime,
    openid: str | None = None,
    kiosk_id: str | None = None,
    device: str | None = None,
) -> Tokens:
    session, refresh_token = await sessions.create(
        rt.pool,
        person_id=person_id,
        channel=channel,
        level=level,
        lifetimes=rt.config.lifetimes[channel],
        now=now,
        openid=openid,
        kiosk_id=kiosk_id,
        device=device,
    )
    token, expires_in = access_for(rt, session)
    return Tokens(access_token=token, expires_in=expires_in, refresh_token=refresh_token, session=session)


async def logged_in(rt: AuthRuntime, tokens: Tokens, *keys: str) -> Tokens:
    """A login went through: clear the failure counts of `keys` and audit the new session."""
    await protection.succeeded(rt, *keys)
    await audit.record(
        rt.pool,
        subject=tokens.session.person_id,
        action="login",
        object=f"session:{tokens.session.id}",
        result="success",
        channel=tokens.session.channel,
        request_id=context.request_id.get(),
    )
    return tokens
