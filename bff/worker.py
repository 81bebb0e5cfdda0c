"""`sanxiang worker`: the background jobs the composition root lists, one active leader at a time.

Every job runs only in the worker that holds the leader advisory lock (on a dedicated
connection: a pooled one would drop the lock on release); the others stand by and take over
within one tick when the leader dies. Long-running loops (`root.loops`) are kept alive (restarted
a second after a failure): the stream consumers in every worker, the outbox relay in the leader. The jobs use the root's upstreams, so their breakers see
every run's calls and stay open across runs when an upstream is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import asyncpg
from prometheus_client import start_http_server

from adapters import context
from adapters.tasks import cancel
from bff.platform.db import session_url
from bff.platform.logs import configure_logging, get_logger
from bff.platform.settings import Settings
from bff.wiring import Job, Loop, open_root

log = get_logger("bff.worker")
_LEADER_KEY = 0x5358_574B_5200  # "SXWKR"


# How long a stopping worker lets running jobs finish before it cancels them (a cancelled job's
# transaction rolls back: what it held goes back to the next leader).
_FINISH_S = 10.0
# How long cancelled tasks get to unwind (a cancelled query is cancelled at the server, a
# listener closed) before the worker stops waiting for them: a stop must not hang on one of them.
_SETTLE_S = 5.0


async def _job_loop(job: Job, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            with context.budget(job.budget):
                await job.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job_failed", job=job.name, error=type(exc).__name__, detail=str(exc)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=job.interval)


async def _settle(tasks: Sequence[asyncio.Task[None]], what: str) -> None:
    stuck = await cancel(tasks, within=_SETTLE_S)
    if stuck:
        log.warning("worker_stop_stuck", what=what, tasks=[t.get_name() for t in stuck])


async def _keep(loop: Loop) -> None:
    while True:
        try:
            await loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("loop_failed", loop=loop.name, error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(1.0)


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, extra_jobs: Sequence[Job] = ()
) -> None:
    """Run the root's jobs (and `extra_jobs`, for tests) while this worker leads, until `stop`."""
    configure_logging(settings.log_level, settings.log_json)
    assert settings.database_url
    stop = stop or asyncio.Event()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.api_host)
    async with open_root(settings) as root:
        jobs = [*root.jobs, *extra_jobs]
        # The leader lock is a session lock: it needs a connection of its own, never through PgBouncer.
        lock_conn = await asyncpg.connect(session_url(settings), timeout=settings.db_connect_timeout_s)
        # Loops are cancelled at once on stop (a consumer's unacknowledged entries are redelivered);
        # jobs get _FINISH_S to end their run.
        loops = [
            asyncio.create_task(_keep(loop), name=loop.name) for loop in root.loops if not loop.leader_only
        ]
        tasks: list[asyncio.Task[None]] = []
        try:
            while not stop.is_set():
                if await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_KEY):
                    log.info("worker_leader", jobs=[job.name for job in jobs])
                    tasks = [asyncio.create_task(_job_loop(job, stop), name=job.name) for job in jobs]
                    loops += [
                        asyncio.create_task(_keep(loop), name=loop.name)
                        for loop in root.loops
                        if loop.leader_only
                    ]
                    await stop.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=2.0)
        finally:
            started = time.monotonic()
            await _settle(loops, "loops")
            # Running jobs finish their run (or are cancelled after _FINISH_S and roll back).
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=_FINISH_S)
                if pending:
                    log.warning("worker_jobs_cancelled", jobs=[t.get_name() for t in pending])
                    await _settle(tasks, "jobs")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lock_conn.close(), timeout=_SETTLE_S)
            log.info("worker_stopped", ms=round((time.monotonic() - started) * 1000))
