"""The asyncpg pool: explicit timeouts and a msgspec codec for json/jsonb."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from bff.platform.settings import Settings

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            schema="pg_catalog",
            encoder=lambda value: _encoder.encode(value).decode(),
            decoder=_decoder.decode,
            format="text",
        )


class TimedPool(asyncpg.Pool):
    """A pool whose every acquire has a timeout, including those `pool.fetch()` makes inside.

    asyncpg has no pool-wide acquire timeout: without one a saturated pool makes requests wait
    forever instead of failing within their budget.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create_pool(settings: Settings) -> asyncpg.Pool:
    assert settings.database_url, "database_url must be resolved before the pool is made"
    pool = await TimedPool(
        settings.database_url,
        acquire_timeout=settings.db_acquire_timeout_s,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connect=None,
        setup=None,
        reset=None,
        init_size=None,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        statement_cache_size=settings.db_statement_cache_size,
        init=init_connection,
        server_settings={"application_name": "sanxiang-bff", "timezone": "UTC"},
    )
    assert pool is not None
    return pool


def session_url(settings: Settings) -> str:
    """Where a connection that must keep its session (advisory locks, LISTEN) goes: PostgreSQL itself,
    also when the pool goes through PgBouncer in transaction mode."""
    url = settings.database_direct_url or settings.database_url
    assert url, "database_url must be resolved before a session is opened"
    return url
