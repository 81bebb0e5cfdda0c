"""Rate limits and lockouts shared by every replica: one Redis script per decision.

A sliding-window log in a sorted set: the script trims entries older than the window, counts what
is left and admits the hit only if the count is under the limit, all atomically, timed by the Redis
server's clock so replicas with skewed clocks still agree. Keys are `sx:rl:{...}` with the variable
part in a hash tag, so the script stays on one slot in Redis Cluster.
"""

from __future__ import annotations

import math
import uuid

from redis.asyncio import Redis

from adapters.errors import ProblemError

_SLIDING_WINDOW = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_us)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window_us / 1000))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait_us = tonumber(oldest[2]) + window_us - now
return {0, wait_us}
"""

# Failures counted in a window; reaching the threshold sets a lock key that outlives the window.
_FAILURE = """
local fails = redis.call('INCR', KEYS[1])
if fails == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
if fails >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def _key(kind: str, name: str) -> str:
    return f"sx:{kind}:{{{name}}}"


async def hit(redis: Redis, key: str, limit: int, window_s: float) -> tuple[bool, int]:
    """Count one attempt against `key`; returns (allowed, retry_after_seconds)."""
    allowed, wait_us = await redis.eval(  # type: ignore[misc]
        _SLIDING_WINDOW, 1, _key("rl", key), limit, int(window_s * 1_000_000), uuid.uuid4().hex
    )
    if int(allowed) == 1:
        return True, 0
    return False, max(1, math.ceil(int(wait_us) / 1_000_000))


class RateLimited(ProblemError):
    status = 429
    code = "rate_limited"


async def enforce(redis: Redis, key: str, limit: int, window_s: float) -> None:
    """`hit`, raising a 429 problem with `Retry-After` when the limit is reached."""
    allowed, retry_after = await hit(redis, key, limit, window_s)
    if not allowed:
        raise RateLimited(
            "too many attempts, try again later",
            detail_zh="尝试次数过多，请稍后再试",
            headers={"Retry-After": str(retry_after)},
            extra={"retryAfter": retry_after},
        )


async def locked_for(redis: Redis, key: str) -> int:
    """Seconds left on a lockout of `key` (0 when not locked)."""
    ttl = int(await redis.ttl(_key("lock", key)))
    return max(ttl, 0)


async def record_failure(redis: Redis, key: str, *, threshold: int, window_s: int, lock_s: int) -> bool:
    """Count a failed attempt; returns True when this failure locked `key` out."""
    locked = await redis.eval(  # type: ignore[misc]
        _FAILURE, 2, _key("fail", key), _key("lock", key), window_s, threshold, lock_s
    )
    return int(locked) == 1


async def clear_failures(redis: Redis, key: str) -> None:
    await redis.delete(_key("fail", key))
