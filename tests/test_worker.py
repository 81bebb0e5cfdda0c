"""The worker: jobs run only in the leader; a standby takes over when the leader stops."""

from __future__ import annotations

import asyncio
import contextlib

from bff.wiring import Job
from bff.worker import run_worker
from tests.conftest import make_settings


async def test_one_leader_runs_the_jobs_and_a_standby_takes_over(services, redis) -> None:
    await redis.delete("sx:test:worker-runs")

    def tick(port: int) -> Job:
        async def run() -> None:
            await redis.rpush("sx:test:worker-runs", port)

        return Job("test-tick", interval=0.05, budget=1.0, run=run)

    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    settings_a = make_settings(services, "http://127.0.0.1:1", api_port=1111)
    settings_b = make_settings(services, "http://127.0.0.1:1", api_port=2222)
    first = asyncio.create_task(run_worker(settings_a, stop=first_stop, extra_jobs=[tick(1111)]))
    await asyncio.sleep(0.5)
    second = asyncio.create_task(run_worker(settings_b, stop=second_stop, extra_jobs=[tick(2222)]))
    try:
        await asyncio.sleep(1.0)
        runs = [int(x) for x in await redis.lrange("sx:test:worker-runs", 0, -1)]
        assert runs and set(runs) == {1111}, runs  # only the leader ran the job
        first_stop.set()
        await asyncio.wait_for(first, 10)
        await redis.delete("sx:test:worker-runs")
        await asyncio.sleep(3.0)  # the standby polls the lock every 2 s
        runs = [int(x) for x in await redis.lrange("sx:test:worker-runs", 0, -1)]
        assert runs and set(runs) == {2222}, runs
    finally:
        first_stop.set()
        second_stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(first, second), 10)


async def test_a_failing_job_does_not_stop_the_worker(services, redis) -> None:
    await redis.delete("sx:test:worker-fail")

    async def flaky() -> None:
        count = await redis.incr("sx:test:worker-fail")
        if count % 2:
            raise RuntimeError("transient")

    job = Job("test-flaky", interval=0.05, budget=1.0, run=flaky)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(make_settings(services, "http://127.0.0.1:1"), stop=stop, extra_jobs=[job])
    )
    try:
        await asyncio.sleep(1.0)
        assert int(await redis.get("sx:test:worker-fail")) >= 4
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_jobs_breaker_opens_and_stays_open_across_runs(services, sandbox_url, sandbox) -> None:
    """The worker's jobs use the root's one Upstream per system: a failing case system opens its breaker
    after a few reconciler runs, and later runs send it nothing (a new Upstream per run never opened)."""
    from adapters import context
    from adapters.breaker import State
    from adapters.errors import ProblemError, UpstreamUnavailable
    from bff.wiring import open_root
    from tests.test_journey_helpers import upstream_urls

    settings = make_settings(
        services,
        sandbox_url,
        **upstream_urls(sandbox_url),
        breaker_minimum_calls=4,
        breaker_open_s=60,
        upstream_max_retries=0,
    )
    fault = await sandbox.put("/_control/faults/cases", json={"errorRate": 1.0, "errorKind": "503"})
    assert fault.status_code == 200, fault.text
    async with open_root(settings) as root:
        job = {j.name: j for j in root.jobs}["cases_reconcile"]
        breaker = root.upstreams["cases"].breaker
        runs = 0
        while breaker.state is not State.OPEN:
            runs += 1
            assert runs <= 4, "four failed runs reach the breaker's minimum calls"
            with contextlib.suppress(ProblemError), context.budget(job.budget):
                await job.run()
        sent = (await sandbox.get("/_control/requests/cases")).json()["count"]
        for _ in range(5):
            with context.budget(job.budget):
                try:
                    await job.run()
                except UpstreamUnavailable as exc:
                    assert "circuit open" in str(exc.detail)
                else:
                    raise AssertionError("an open breaker must refuse the job's call")
        assert breaker.state is State.OPEN
        assert (await sandbox.get("/_control/requests/cases")).json()["count"] == sent
