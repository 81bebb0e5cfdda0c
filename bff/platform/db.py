"""The asyncpg pool: explicit timeouts and a msgspec codec for json/jsonb."""

from __future__ import annotations

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


async def create_pool(settings: Settings) -> asyncpg.Pool:
    assert settings.database_url, "database_url must be resolved before the pool is made"
    pool = await asyncpg.create_pool(
        dsn=settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        init=init_connection,
        server_settings={"application_name": "sanxiang-bff", "timezone": "UTC"},
    )
    assert pool is not None
    return pool
