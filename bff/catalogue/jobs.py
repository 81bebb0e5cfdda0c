"""The catalogue sync as a worker job: incremental every `catalogue_sync_interval_s`, a full resync
every `catalogue_full_resync_s` (and the first time). Importing this module registers the job."""

from __future__ import annotations

import time

import asyncpg
from redis.asyncio import Redis

from bff.catalogue.sync import sync_with_settings
from bff.platform.settings import Settings
from bff.worker import Job, register

# The worker ticks often; the sync itself runs at the configured period.
_TICK_S = 5.0
_last_run = 0.0


async def run_catalogue_sync(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    global _last_run  # noqa: PLW0603 - one leader per process; the period is per process
    if time.monotonic() - _last_run < settings.catalogue_sync_interval_s:
        return
    _last_run = time.monotonic()
    await sync_with_settings(pool, redis, settings)


register(Job("catalogue_sync", interval=_TICK_S, budget=900.0, run=run_catalogue_sync))
