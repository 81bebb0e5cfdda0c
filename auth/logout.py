"""Logout takes effect at once: the sessions are revoked in PostgreSQL (no more refreshes) and
deny-listed in Redis (their access tokens stop working before they expire)."""

from __future__ import annotations

import uuid
from datetime import datetime

from adapters import context
from auth import audit, denylist, sessions
from auth.principal import Principal
from auth.runtime import AuthRuntime


def _is_person(person_id: str) -> bool:
    try:
        uuid.UUID(person_id)
    except ValueError:
        return False
    return True


async def logout(rt: AuthRuntime, principal: Principal, *, everywhere: bool, now: datetime) -> int:
    """Returns how many sessions ended."""
    ended = [principal.session_id]
    if everywhere and _is_person(principal.person_id):
        ended += await sessions.revoke_all(
            rt.pool, now=now, reason="logout_everywhere", person_id=principal.person_id
        )
    elif _is_person(principal.person_id):
        await sessions.revoke(rt.pool, principal.session_id, now=now, reason="logout")
    ended = sorted(set(ended))
    await denylist.deny_sessions(rt.redis, ended, rt.deny_ttl_s)
    await denylist.deny_token(rt.redis, principal.session_id, principal.jti, rt.deny_ttl_s)
    await audit.record(
        rt.pool,
        subject=principal.person_id,
        action="logout_everywhere" if everywhere else "logout",
        object=f"session:{principal.session_id}",
        result=f"ended_{len(ended)}",
        channel=principal.channel,
        request_id=context.request_id.get(),
    )
    return len(ended)


async def end_session(rt: AuthRuntime, principal: Principal, session_id: str, *, now: datetime) -> bool:
    """A person ends one of their own sessions (e.g. a lost phone); False if it is not theirs or not live."""
    ended = await sessions.revoke(
        rt.pool, session_id, now=now, reason="ended_by_owner", person_id=principal.person_id
    )
    if ended:
        await denylist.deny_sessions(rt.redis, [session_id], rt.deny_ttl_s)
    await audit.record(
        rt.pool,
        subject=principal.person_id,
        action="session_end",
        object=f"session:{session_id}",
        result="success" if ended else "not_found",
        channel=principal.channel,
        request_id=context.request_id.get(),
    )
    return ended
