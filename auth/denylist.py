"""Immediate logout for stateless access tokens: deny-list entries in Redis until the token expires.

A `jti` entry kills one access token; a session entry kills every access token of that session
(logout everywhere, a revoked kiosk, a detected refresh-token reuse). Checking a token is one MGET:
both keys carry the session id as their hash tag, so they share a slot in a Redis Cluster too.

`DenyCache` spares that round trip for a token already checked in this process, and stays exact
across replicas:

- Every revocation is published on `CHANNEL` after its keys are written; each process's listener
  forgets what it remembered of those sessions, then acknowledges with its listener id.
- A process trusts its memory only while Redis answered, within `STALE_AFTER_S`, a PING it sent:
  Redis sends replies and messages on one ordered connection, so a PONG to a PING sent at `s`
  proves every message published before `s` was read.
- Before it starts trusting (on SUBSCRIBE and after each PONG) a listener registers itself in
  `LISTENERS` with Redis's own clock; the registration outlives the trust it covers.
- The revoker waits until every listener registered within `REGISTERED_S` acknowledged, or until
  `STALE_AFTER_S` (plus one ping interval) has passed since it published: by then a listener that
  did not acknowledge has stopped trusting its memory and checks Redis again.

So a revoked token is refused on the next request on every replica, as without the cache; a
logout waits for one pub/sub round trip (or, while a replica is unreachable, about a second).
While the listener is not subscribed (starting, reconnecting, or on a Redis Cluster, whose asyncio
client has no pub/sub) every check is the MGET.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from adapters.tasks import cancel

log = logging.getLogger("auth.denylist")

CHANNEL = "sx:auth:deny:changed"
# How long a process trusts its memory after the newest PING Redis answered; also how long a
# revoker waits for acknowledgements before relying on that.
STALE_AFTER_S = 1.0
PING_EVERY_S = 0.2
# How long a stop waits for the listener to end (it ends within PING_EVERY_S once told to).
_STOP_WAIT_S = 2.0
LISTENERS = "sx:auth:deny:listeners"
REGISTERED_S = 1.5
# Registration with the server's clock (processes' clocks are not compared with each other).
_REGISTER = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 600000)
return now
"""
_REGISTERED = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""
_MAX_REMEMBERED = 100_000


def _jti(sid: str, jti: str) -> str:
    return f"sx:auth:deny:{{{sid}}}:jti:{jti}"


def _sid(sid: str) -> str:
    return f"sx:auth:deny:{{{sid}}}:sid"


def _acks(message_id: str) -> str:
    return f"sx:auth:deny:acks:{message_id}"


async def deny_token(redis: Redis, sid: str, jti: str, ttl_s: int) -> None:
    await redis.set(_jti(sid, jti), b"1", ex=max(1, ttl_s))
    await _announce(redis, [sid])


async def deny_sessions(redis: Redis, session_ids: list[str], ttl_s: int) -> None:
    if not session_ids:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for sid in session_ids:
            pipe.set(_sid(sid), b"1", ex=max(1, ttl_s))
        await pipe.execute()
    await _announce(redis, session_ids)


async def _announce(redis: Redis, session_ids: list[str]) -> None:
    """Tell every process's `DenyCache`, and wait until each has forgotten these sessions or has
    stopped trusting its memory (see the module docstring)."""
    message_id = uuid.uuid4().hex
    expected = {
        bytes(m).decode() for m in await redis.eval(_REGISTERED, 1, LISTENERS, int(REGISTERED_S * 1000))
    }
    # Not caught: a revocation the other processes were not told of must not look done.
    await redis.publish(CHANNEL, " ".join([message_id, *session_ids]).encode())
    deadline = time.monotonic() + STALE_AFTER_S + PING_EVERY_S
    acked: set[str] = set()
    while not expected <= acked and (remaining := deadline - time.monotonic()) > 0:
        got = await redis.blpop([_acks(message_id)], timeout=max(0.01, remaining))
        if got is None:
            break
        member = got[1]
        acked.add(member.decode() if isinstance(member, bytes) else str(member))
    if not expected <= acked:
        # A listener did not answer: once the deadline passes it no longer trusts its memory.
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(Exception):
        await redis.delete(_acks(message_id))


async def is_denied(redis: Redis, jti: str, sid: str) -> bool:
    found = await redis.mget([_jti(sid, jti), _sid(sid)])
    return any(value is not None for value in found)


class DenyCache:
    """This process's memory of tokens Redis said were not denied (see the module docstring)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.clean: dict[str, set[str]] = {}  # session id -> jtis checked and not denied
        self.remembered = 0
        self.generation = 0  # moves on every change heard: an MGET older than it is not remembered
        self.fresh_as_of: float | None = None  # send time of the newest PING Redis answered
        self.task: asyncio.Task[None] | None = None
        self.listener_id = uuid.uuid4().hex
        self.stopping = False

    def trusted(self) -> bool:
        return self.fresh_as_of is not None and time.monotonic() - self.fresh_as_of < STALE_AFTER_S

    async def is_denied(self, jti: str, sid: str) -> bool:
        if self.trusted() and jti in self.clean.get(sid, ()):
            return False
        generation = self.generation
        denied = await is_denied(self.redis, jti, sid)
        if not denied and generation == self.generation and self.trusted():
            if self.remembered >= _MAX_REMEMBERED:
                self.clean.clear()
                self.remembered = 0
            jtis = self.clean.setdefault(sid, set())
            if jti not in jtis:
                jtis.add(jti)
                self.remembered += 1
        return denied

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._listen(), name="deny-cache")

    async def stop(self) -> None:
        if self.task is not None:
            # The flag ends the loop at its next turn should every cancellation be swallowed.
            self.stopping = True
            await cancel([self.task], within=_STOP_WAIT_S)
            self.task = None
            # Revokers need not wait for a process that is gone.
            with contextlib.suppress(Exception):
                await self.redis.zrem(LISTENERS, self.listener_id)

    def _forget(self, session_ids: list[str] | None = None) -> None:
        self.generation += 1
        if session_ids is None:
            self.clean.clear()
            self.remembered = 0
            return
        for sid in session_ids:
            self.remembered -= len(self.clean.pop(sid, ()))

    async def _register(self) -> None:
        """Registered before trusting: a revoker then waits for this process's acknowledgement."""
        await self.redis.eval(_REGISTER, 1, LISTENERS, self.listener_id)  # type: ignore[misc]

    async def _listen(self) -> None:
        while not self.stopping:
            pubsub = self.redis.pubsub()
            try:
                await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception:  # reconnect; meanwhile every check asks Redis
                log.warning("deny-list listener lost its subscription", exc_info=True)
            finally:
                self.fresh_as_of = None
                self._forget()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0.5)

    async def _follow(self, ps: Any) -> None:
        sent = time.monotonic()
        await ps.subscribe(CHANNEL)
        ping_sent: float | None = None
        while not self.stopping:
            message = await ps.get_message(timeout=PING_EVERY_S)
            now = time.monotonic()
            if message is None:
                if ping_sent is None:
                    ping_sent = now
                    await ps.ping()
                elif now - ping_sent > STALE_AFTER_S:
                    raise ConnectionError("Redis did not answer the listener's PING")
                continue
            kind = message["type"]
            if kind == "subscribe":
                # Nothing remembered yet is trusted: start from empty, fresh as of the SUBSCRIBE.
                self._forget()
                await self._register()
                self.fresh_as_of = sent
            elif kind == "pong" and ping_sent is not None:
                await self._register()
                self.fresh_as_of = ping_sent
                ping_sent = None
            elif kind == "message":
                message_id, *session_ids = bytes(message["data"]).decode().split(" ")
                self._forget(session_ids)
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.rpush(_acks(message_id), self.listener_id.encode())
                    pipe.expire(_acks(message_id), 10)
                    await pipe.execute()
            if ping_sent is None and self.fresh_as_of is not None and now - self.fresh_as_of >= PING_EVERY_S:
                ping_sent = now
                await ps.ping()
