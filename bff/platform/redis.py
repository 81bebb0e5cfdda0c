"""The Redis client: explicit timeouts and a bounded retry, never the library defaults.

With `redis_cluster` the same URL names one node of a Redis Cluster and the client is redis-py's
cluster client. The code uses only commands whose keys share a slot (keys a script or an MGET touches
together carry a common hash tag, `{...}`), so the one `Redis` interface serves both.
"""

from __future__ import annotations

import contextlib
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bff.platform.settings import Settings


def create_redis(settings: Settings) -> Redis:
    assert settings.redis_url, "redis_url must be resolved before the client is made"
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            socket_connect_timeout=settings.redis_connect_timeout_s,
            socket_timeout=settings.redis_socket_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), settings.redis_retries),
            # The library's own choice: with RESP2 forced, redis-py 8.1's async cluster client lost a
            # connection's writer while connecting concurrently (seen in about 1 test run in 2).
            protocol=None,
            decode_responses=False,
        )
        # Same command surface for what we use (see the module docstring).
        return cast(Redis, cluster)
    # A blocking pool: under a burst, a request waits (bounded) for a connection instead of failing
    # at once as the default pool does when its connections are all in use.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), settings.redis_retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
        protocol=2,
        decode_responses=False,
    )
    return Redis.from_pool(pool)


async def learn_topology(redis: Redis) -> None:
    """A cluster client learns the slots before its first requests: redis-py 8.1's async cluster
    client, first used by many tasks at once, loses a connection's writer while connecting
    (AttributeError; 2 runs in 8 of tests/test_redis_cluster.py without this, 0 in 8 with it).
    An unreachable cluster does not stop the start: the client then learns it on first use."""
    if isinstance(redis, RedisCluster):
        with contextlib.suppress(RedisError, OSError):
            await redis.initialize()
