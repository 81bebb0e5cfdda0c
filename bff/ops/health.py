"""Readiness: PostgreSQL and Redis answer; each upstream's breaker state (reported, not required)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from redis.asyncio import Redis

from adapters.http import Upstream
from bff.platform.lifecycle import Drain


async def _check_pg(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(1.0):
            return bool(await pool.fetchval("SELECT 1", timeout=1.0) == 1)
    except Exception:
        return False


async def _check_redis(redis: Redis) -> bool:
    try:
        async with asyncio.timeout(1.0):
            return bool(await redis.ping())
    except Exception:
        return False


class Health:
    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, upstreams: dict[str, Upstream], drain: Drain
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.upstreams = upstreams
        self.drain = drain

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        pg_ok, redis_ok = await asyncio.gather(_check_pg(self.pool), _check_redis(self.redis))
        checks = {
            "postgres": "ok" if pg_ok else "down",
            "redis": "ok" if redis_ok else "down",
            "draining": self.drain.draining,
            "upstreams": {name: upstream.health() for name, upstream in self.upstreams.items()},
        }
        # An open breaker degrades some features but does not make this replica unfit for traffic;
        # a replica that is shutting down is (the load balancer must stop sending it new requests).
        return pg_ok and redis_ok and not self.drain.draining, checks
