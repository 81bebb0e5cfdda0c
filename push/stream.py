"""The Redis side of push: one stream and its consumer group. Every key shares the `{push}` hash
tag, so a Redis Cluster keeps them in one slot (a pipeline or script may touch them together)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

STREAM = "sx:{push}:events"
GROUP = "push"


async def ensure_group(redis: Redis) -> None:
    """The consumer group, made (with the stream) if Redis lost it; read from the start then: the
    relay re-publishes what was not finished, and consumers are idempotent."""
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def claimed_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XAUTOCLAIM answers [next, entries] on Redis 6.2 and [next, entries, deleted] on 7+: index."""
    if not reply:
        return []
    entries = reply[1] if len(reply) > 1 else []
    return [e for e in entries if e and e[1] is not None]
