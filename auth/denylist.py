"""Immediate logout for stateless access tokens: deny-list entries in Redis until the token expires.

A `jti` entry kills one access token; a session entry kills every access token of that session
(logout everywhere, a revoked kiosk, a detected refresh-token reuse). Checking a token is one MGET:
both keys carry the session id as their hash tag, so they share a slot in a Redis Cluster too.
"""

from __future__ import annotations

from redis.asyncio import Redis


def _jti(sid: str, jti: str) -> str:
    return f"sx:auth:deny:{{{sid}}}:jti:{jti}"


def _sid(sid: str) -> str:
    return f"sx:auth:deny:{{{sid}}}:sid"


async def deny_token(redis: Redis, sid: str, jti: str, ttl_s: int) -> None:
    await redis.set(_jti(sid, jti), b"1", ex=max(1, ttl_s))


async def deny_sessions(redis: Redis, session_ids: list[str], ttl_s: int) -> None:
    if not session_ids:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for sid in session_ids:
            pipe.set(_sid(sid), b"1", ex=max(1, ttl_s))
        await pipe.execute()


async def is_denied(redis: Redis, jti: str, sid: str) -> bool:
    found = await redis.mget([_jti(sid, jti), _sid(sid)])
    return any(value is not None for value in found)
