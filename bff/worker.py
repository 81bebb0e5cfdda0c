"""`sanxiang worker`: background jobs, one active leader at a time.

Every job runs only in the worker that holds the leader advisory lock (on a dedicated
connection: a pooled one would drop the lock on release); the others stand by and take over
within one tick when the leader dies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
from redis.asyncio import Redis

from adapters import context
from bff.platform.db import create_pool
from bff.platform.logs import configure_logging, get_logger
from bff.platform.redis import create_redis
from bff.platform.settings import Settings

log = get_logger("bff.worker")
_LEADER_KEY = 0x5358_574B_5200  # "SXWKR"


class Job:
    """A periodic job: `run` is called every `interval` seconds with a `budget` of its own."""

    def __init__(
        self,
        name: str,
        interval: float,
        budget: float,
        run: Callable[[asyncpg.Pool, Redis, Settings], Awaitable[None]],
    ) -> None:
        self.name = name
        self.interval = interval
        self.budget = budget
        self.run = run


JOBS: list[Job] = []


def register(job: Job) -> None:
    JOBS.append(job)


async def _job_loop(job: Job, pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
    while True:
        try:
            with context.budget(job.budget):
                await job.run(pool, redis, settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job_failed", job=job.name, error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(job.interval)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    configure_logging(settings.log_level, settings.log_json)
    assert settings.database_url
    stop = stop or asyncio.Event()
    pool = await create_pool(settings)
    redis = create_redis(settings)
    lock_conn = await asyncpg.connect(settings.database_url, timeout=settings.db_connect_timeout_s)
    tasks: list[asyncio.Task[None]] = []
    try:
        while not stop.is_set():
            if await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_KEY):
                log.info("worker_leader", jobs=[job.name for job in JOBS])
                tasks = [asyncio.create_task(_job_loop(job, pool, redis, settings)) for job in JOBS]
                await stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await lock_conn.close()
        await redis.aclose()
        await pool.close()
