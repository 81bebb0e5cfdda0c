"""The Redis client: explicit timeouts and a bounded retry, never the library defaults."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bff.platform.settings import Settings


def create_redis(settings: Settings) -> Redis:
    assert settings.redis_url, "redis_url must be resolved before the client is made"
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
