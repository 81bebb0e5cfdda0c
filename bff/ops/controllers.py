"""Operations endpoints (outside /api): liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio import Redis

from adapters.http import Upstream


@get("/healthz", include_in_schema=True, tags=["ops"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


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


@get("/readyz", tags=["ops"], summary="PostgreSQL and Redis reachable; upstream breaker states")
async def readyz(
    db_pool: NamedDependency[asyncpg.Pool],
    redis: NamedDependency[Redis],
    upstreams: NamedDependency[dict[str, Upstream]],
) -> Response[dict[str, Any]]:
    pg_ok, redis_ok = await asyncio.gather(_check_pg(db_pool), _check_redis(redis))
    breakers = {name: upstream.health() for name, upstream in upstreams.items()}
    # An open breaker degrades some features but does not make this replica unfit for traffic.
    ready = pg_ok and redis_ok
    checks = {
        "postgres": "ok" if pg_ok else "down",
        "redis": "ok" if redis_ok else "down",
        "upstreams": breakers,
    }
    if ready:
        return Response({"status": "ready", "checks": checks})
    problem = {
        "type": "https://sanxiang.gov.cn/problems/not-ready",
        "title": "Not ready",
        "status": 503,
        "code": "not_ready",
        "checks": checks,
    }
    return Response(problem, status_code=503, media_type="application/problem+json")


@get("/metrics", tags=["ops"], summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
